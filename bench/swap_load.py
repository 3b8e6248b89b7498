#!/usr/bin/env python3
"""Hot-swap under load (issue #5): constant load through the default
filter -> sentiment Sequence while the sentiment step's traffic is swapped
between two versions N times via the admin API.

Reports: events sent / failed / lost, whether every response's
`stephostversions` names a version live at some moment while that event was in
flight, p50/p99 latency in a steady phase (no swaps) vs during swaps, and
swap latency (admin request -> live) for a version upload that is in the
compile cache vs one that is not (same component plus a custom section, so a
new digest).

Usage: python3 bench/swap_load.py [STEPHOST_BINARY] [SWAPS=100] [CLIENTS=4]
"""
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/stephost"
swaps = int(sys.argv[2]) if len(sys.argv) > 2 else 100
clients = int(sys.argv[3]) if len(sys.argv) > 3 else 4
TOKEN = "bench-token"
SENTIMENT = "target/guests/wasm32-wasip2/release/sentiment.wasm"

manifest = f"""
apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {{name: ml-processing-pipeline}}
spec:
  steps:
    - ref: {{apiVersion: serving.knative.dev/v1, kind: Service, name: content-filter-service}}
    - ref: {{apiVersion: serving.knative.dev/v1, kind: Service, name: sentiment-analysis-service}}
---
apiVersion: stephost.dev/v1alpha1
kind: WasmStep
metadata: {{name: content-filter-service}}
spec:
  component: builtin:content-filter
  reuseInstances: true
---
apiVersion: stephost.dev/v1alpha1
kind: WasmStep
metadata: {{name: sentiment-analysis-service}}
spec:
  versions:
    - {{name: v1, component: builtin:sentiment}}
    - {{name: v2, component: builtin:sentiment}}
  traffic:
    - {{version: v1, percent: 100}}
    - {{version: v2, percent: 0}}
  models:
    sentiment: {{source: builtin:sentiment, maxInputElements: 512}}
"""

REVIEWS = [
    "I absolutely loved this book, a wonderful and moving story",
    "The plot was thin and the characters were flat",
]


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def custom_section(payload: bytes) -> bytes:
    """A wasm custom section (id 0) named 'bench' carrying payload."""
    name = b"bench"
    body = bytes([len(name)]) + name + payload

    def leb(n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    return b"\x00" + leb(len(body)) + body


def main():
    work = tempfile.mkdtemp()
    path = os.path.join(work, "m.yaml")
    open(path, "w").write(manifest)
    env = dict(os.environ, STEPHOST_ADMIN_TOKEN=TOKEN, RUST_LOG="warn")
    proc = subprocess.Popen(
        [binary, "serve", "--host", "127.0.0.1", "--port", "0", "--manifest", path,
         "--watch-interval", "PT0S"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        port = int(re.search(r":(\d+)", proc.stdout.readline()).group(1))
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)

        def admin(method, url, body=b""):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            c.request(method, url, body, {"authorization": f"Bearer {TOKEN}"})
            r = c.getresponse()
            data = r.read()
            if r.status != 200:
                raise SystemExit(f"admin {method} {url}: {r.status} {data[:300]!r}")
            return data

        # (request sent, response received, version live from then on): the
        # swap takes effect somewhere in between — v1 from the start.
        live = [(0.0, 0.0, "v1")]
        records = []  # (sent, received, status, version)
        stop = threading.Event()
        lock = threading.Lock()

        def client(k):
            conn = http.client.HTTPConnection("127.0.0.1", port)
            i = 0
            while not stop.is_set():
                i += 1
                body = json.dumps({"reviewText": REVIEWS[i % 2]})
                t0 = time.monotonic()
                try:
                    conn.request("POST", "/", body, {
                        "ce-specversion": "1.0", "ce-id": f"c{k}-{i}", "ce-source": "/bench",
                        "ce-type": "new-review-comment", "content-type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                except OSError as e:  # a lost event: no answer at all
                    with lock:
                        records.append((t0, time.monotonic(), -1, None))
                    conn = http.client.HTTPConnection("127.0.0.1", port)
                    continue
                t1 = time.monotonic()
                versions = r.getheader("ce-stephostversions") or ""
                m = re.search(r"sentiment-analysis-service=(\w+)", versions)
                with lock:
                    records.append((t0, t1, r.status, m.group(1) if m else None))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        start = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(5)  # steady phase
        steady_end = time.monotonic()
        for n in range(swaps):
            target = "v2" if n % 2 == 0 else "v1"
            other = "v1" if target == "v2" else "v2"
            body = json.dumps({"traffic": [{"version": target, "percent": 100},
                                           {"version": other, "percent": 0}]}).encode()
            t = time.monotonic()
            admin("PUT", "/admin/steps/sentiment-analysis-service/traffic", body)
            with lock:
                live.append((t, time.monotonic(), target))
            time.sleep(0.05)
        swaps_end = time.monotonic()
        stop.set()
        for t in threads:
            t.join()

        failed = [r for r in records if r[2] not in (200, -1)]
        lost = [r for r in records if r[2] == -1]
        steady = [r[1] - r[0] for r in records if r[1] <= steady_end]
        during = [r[1] - r[0] for r in records if r[0] >= steady_end and r[1] <= swaps_end]

        def live_during(t0, t1):
            """Versions that may have been live at some moment in [t0, t1]."""
            names = set()
            current = None
            for (req, resp, v) in live:
                if resp <= t0:
                    current = v          # surely live by t0 (until the next swap)
                elif req <= t1:
                    names.add(v)         # became live during the event's flight
            names.add(current)
            return names

        wrong = [r for r in records if r[2] == 200 and r[3] not in live_during(r[0], r[1])]

        # Swap latency: upload the same bytes (compile cache hit) vs new bytes.
        sentiment = open(SENTIMENT, "rb").read()
        t = time.monotonic()
        admin("PUT", "/admin/steps/sentiment-analysis-service/versions/v3", sentiment)
        cached = time.monotonic() - t
        fresh_bytes = sentiment + custom_section(str(time.time()).encode())
        t = time.monotonic()
        admin("PUT", "/admin/steps/sentiment-analysis-service/versions/v4", fresh_bytes)
        uncached = time.monotonic() - t
        t = time.monotonic()
        admin("PUT", "/admin/steps/sentiment-analysis-service/traffic",
              json.dumps({"traffic": [{"version": "v3", "percent": 100}]}).encode())
        traffic_swap = time.monotonic() - t

        print("| measure | value |")
        print("|---|---|")
        print(f"| clients | {clients} keep-alive connections, default filter -> sentiment Sequence |")
        print(f"| traffic swaps (admin API, v1 <-> v2) | {swaps} |")
        print(f"| events | {len(records)} ({len(records) / (swaps_end - start):.0f}/s) |")
        print(f"| failed (non-200) | {len(failed)} |")
        print(f"| lost (no answer: connection error) | {len(lost)} |")
        print(f"| stephostversions not live while in flight | {len(wrong)} |")
        print(f"| steady phase p50 / p99 | {statistics.median(steady) * 1000:.1f} / {pct(steady, 0.99) * 1000:.1f} ms ({len(steady)} events) |")
        print(f"| during swaps p50 / p99 | {statistics.median(during) * 1000:.1f} / {pct(during, 0.99) * 1000:.1f} ms ({len(during)} events) |")
        print(f"| p99 during swaps / steady | {pct(during, 0.99) / pct(steady, 0.99):.2f}x |")
        print(f"| traffic change (request -> live) | {traffic_swap * 1000:.1f} ms |")
        print(f"| version upload, compile cache hit (request -> live) | {cached * 1000:.1f} ms |")
        print(f"| version upload, not cached (request -> live) | {uncached * 1000:.1f} ms |")
        if failed or lost or wrong:
            sys.exit(1)
    finally:
        proc.terminate()
        proc.wait()


main()
