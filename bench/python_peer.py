#!/usr/bin/env python3
"""The *python-peer* baseline of bench/perf.py (issue #8, P3): what a team
would deploy instead of stephost — each step its own Python CloudEvents
service, the same two ONNX models on onnxruntime, chained by a dispatcher.

    python_peer.py filter    PORT   content filter (alt-profanity-check's model)
    python_peer.py sentiment PORT   sentiment (MiniLM, tokenised by `tokenizers`)

A plain ASGI app on uvicorn (one worker; onnxruntime with its default thread
pool). The event contract is the reference guests' own (Knative bookstore
sample): data {"reviewText": ...}; the filter adds extension `badwordfilter`
and data `badWordResult`/`offensiveScore`; sentiment sets type
`moderated-comment`, extension `sentimentresult` and data
`sentimentResult`/`sentimentScore`. The filter scores the raw text as
alt-profanity-check does (no evasion normaliser: the peer is the sample as
written). POST /  runs the step; GET /readyz answers 200 once loaded.
"""
import collections
import json
import math
import os
import re
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from cloudevents.v1.conversion import to_binary
from cloudevents.v1.http import CloudEvent, from_http

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "guests")


class Filter:
    """alt-profanity-check's tokenizer (sklearn's (?u)\\b\\w\\w+\\b on lowercased
    text) + the sparse ONNX graph: distinct term ids and their counts."""

    TOKEN = re.compile(r"(?u)\b\w\w+\b")

    def __init__(self):
        model = os.path.join(ROOT, "content-filter", "model")
        with open(os.path.join(model, "vocab.txt"), encoding="utf-8") as f:
            self.vocab = {t: i for i, t in enumerate(f.read().splitlines())}
        self.session = ort.InferenceSession(
            os.path.join(model, "profanity_linear_sparse.onnx"),
            providers=["CPUExecutionProvider"])

    def score(self, text):
        counts = collections.Counter(
            self.vocab[t] for t in self.TOKEN.findall(text.lower()) if t in self.vocab)
        ids, n = (list(counts), list(counts.values())) if counts else ([0], [0.0])
        out = self.session.run(None, {
            "term_ids": np.array(ids, dtype=np.int64),
            "term_counts": np.array(n, dtype=np.float32),
        })
        return float(np.asarray(out[0]).reshape(-1)[0])

    def handle(self, event):
        fields = review(event)
        score = self.score(fields["reviewText"])
        verdict = "bad" if score > 0.5 else "good"
        attrs = dict(event.get_attributes())
        attrs["badwordfilter"] = verdict
        fields.update(badWordResult=verdict, offensiveScore=score)
        return CloudEvent(attrs, fields)


class Sentiment:
    """BERT WordPiece (the model's own vocabulary, uncased, 128 tokens) and the
    MiniLM classifier; P(positive) = softmax(logits)[1], neutral band 0.1."""

    def __init__(self):
        from tokenizers import BertWordPieceTokenizer
        model = os.path.join(ROOT, "sentiment", "model")
        self.tokenizer = BertWordPieceTokenizer(os.path.join(model, "vocab.txt"), lowercase=True)
        self.tokenizer.enable_truncation(128)
        self.session = ort.InferenceSession(
            os.path.join(model, "model.onnx"), providers=["CPUExecutionProvider"])

    def handle(self, event):
        fields = review(event)
        ids = self.tokenizer.encode(fields["reviewText"]).ids
        logits = self.session.run(None, {
            "input_ids": np.array([ids], dtype=np.int64),
            "attention_mask": np.ones((1, len(ids)), dtype=np.int64),
        })[0].reshape(-1)
        score = 1.0 / (1.0 + math.exp(float(logits[0] - logits[1])))
        label = ("neutral" if abs(score - 0.5) <= 0.05
                 else "positive" if score > 0.5 else "negative")
        attrs = dict(event.get_attributes())
        attrs.update(type="moderated-comment", source="sentiment-analysis", sentimentresult=label)
        fields.update(sentimentResult=label, sentimentScore=score)
        return CloudEvent(attrs, fields)


def review(event):
    data = event.get_data()
    if isinstance(data, (bytes, str)):
        data = json.loads(data)
    if not isinstance(data, dict) or not isinstance(data.get("reviewText"), str):
        raise ValueError('data must be a JSON object with a string "reviewText"')
    return data


def app_for(step):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            await reply(send, 200, [], b"ready")
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            event = from_http(headers, body)
            out_headers, out_body = to_binary(step.handle(event))
        except Exception as e:  # a bad event: the subscriber's 400
            await reply(send, 400, [], str(e).encode())
            return
        await reply(send, 200, list(out_headers.items()), out_body)
    return app


async def reply(send, status, headers, body):
    await send({"type": "http.response.start", "status": status,
                "headers": [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in headers]})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    step = {"filter": Filter, "sentiment": Sentiment}[kind]()
    uvicorn.run(app_for(step), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, lifespan="on")
