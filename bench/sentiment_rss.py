#!/usr/bin/env python3
"""Peak RSS of a real `stephost serve` (the default filter -> sentiment
Sequence) after N events, and its throughput while sending them.

Usage: python3 bench/sentiment_rss.py [STEPHOST_BINARY] [N=1000] [CONCURRENCY=4]
Prints RSS right after start-up (models loaded), then VmHWM (peak) and VmRSS
after the events, from /proc/PID/status.
"""
import http.client
import json
import re
import subprocess
import sys
import threading
import time

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/stephost"
total = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 4

REVIEWS = [
    "I absolutely loved this book, a wonderful and moving story",
    "I bought this for my daughter and honestly the plot was thin, the characters were flat",
    "What a load of garbage, the worst thing I have read this year",
    "A solid read with a few slow chapters in the middle but a great ending",
]


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def mib(value):
    return int(value.split()[0]) / 1024


proc = subprocess.Popen(
    [binary, "serve", "--host", "127.0.0.1", "--port", "0"],
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
)
try:
    line = proc.stdout.readline()
    port = int(re.search(r":(\d+)", line).group(1))
    started = time.time()
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        try:
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        time.sleep(0.05)
    ready = time.time() - started
    idle = status(proc.pid)

    counter = iter(range(total))
    lock = threading.Lock()
    failures = []

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            body = json.dumps({"reviewText": REVIEWS[i % len(REVIEWS)]})
            conn.request(
                "POST",
                "/",
                body,
                {
                    "ce-specversion": "1.0",
                    "ce-id": f"rss-{i}",
                    "ce-source": "/bench",
                    "ce-type": "new-review-comment",
                    "content-type": "application/json",
                },
            )
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)

    t0 = time.time()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0
    after = status(proc.pid)
    print(f"| measure | value |")
    print(f"|---|---|")
    print(f"| start -> /readyz (models loaded, warm compile cache) | {ready * 1000:.0f} ms |")
    print(f"| RSS after start-up | {mib(idle['VmRSS']):.1f} MiB |")
    print(f"| events sent (concurrency {concurrency}) | {total}, {len(failures)} not 200 |")
    print(f"| throughput | {total / elapsed:.1f} events/s |")
    print(f"| peak RSS (VmHWM) after {total} events | {mib(after['VmHWM']):.1f} MiB |")
    print(f"| RSS after {total} events | {mib(after['VmRSS']):.1f} MiB |")
    if failures:
        sys.exit(1)
finally:
    proc.terminate()
    proc.wait()
