"""Send one CloudEvent in binary and one in structured mode with the Python
CloudEvents SDK (PyPI `cloudevents`), print what stephost answered.

Usage: send_events.py http://127.0.0.1:PORT
Output lines: "<mode> <status> <ce-id> <data>".
"""

import sys
import urllib.request

from cloudevents.v1.conversion import to_binary, to_structured
from cloudevents.v1.http import CloudEvent, from_http


def send(url: str, mode: str) -> None:
    event = CloudEvent(
        {"id": f"py-{mode}", "source": "/python-sdk", "type": "dev.stephost.python",
         "datacontenttype": "text/plain"},
        b"hello",  # bytes: raw body in binary mode, data_base64 in structured mode
    )
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        reply = from_http(dict(response.headers), response.read())
        data = reply.data.decode() if isinstance(reply.data, bytes) else reply.data
        print(mode, response.status, reply["id"], data)


if __name__ == "__main__":
    send(sys.argv[1], "binary")
    send(sys.argv[1], "structured")
