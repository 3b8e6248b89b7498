"""Round-trip text attributes through stephost with the Python CloudEvents SDK
(PyPI `cloudevents`; 2.x through its `cloudevents.v1` API, 1.x through
`cloudevents.http`): send one event in binary and one in structured mode,
read stephost's binary-mode answer with the same SDK, print what it read.

Usage: attributes.py http://127.0.0.1:PORT
Output: one JSON object per line: {"mode", "status", "subject", "note", "data"}.
"""

import json
import sys
import urllib.request
import warnings

warnings.simplefilter("ignore")  # 1.x deprecates its own to_binary
try:
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent, from_http
except ImportError:  # cloudevents 1.x
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent, from_http

SUBJECT = "hello world"
NOTE = '50% off "now" (a%41)'


def send(url: str, mode: str) -> None:
    event = CloudEvent(
        {"id": f"py-{mode}", "source": "/python-sdk", "type": "dev.stephost.python",
         "datacontenttype": "text/plain", "subject": SUBJECT, "note": NOTE},
        b"hi",  # bytes: raw body in binary mode, data_base64 in structured mode
    )
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        reply = from_http(dict(response.headers), response.read())
        data = reply.data.decode() if isinstance(reply.data, bytes) else reply.data
        print(json.dumps({"mode": mode, "status": response.status,
                          "subject": reply["subject"], "note": reply["note"], "data": data}))


if __name__ == "__main__":
    send(sys.argv[1], "binary")
    send(sys.argv[1], "structured")
