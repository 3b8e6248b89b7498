#!/usr/bin/env python3
"""Overload (issue #9): does the host push back instead of falling over?

For each host configuration (the defaults, then variations of the running
limit and queue that show why the defaults are what they are): start the real binary serving the default
filter -> sentiment Sequence, find its throughput (closed loop, 4 clients),
call 80 % of that the *sustainable rate* S, measure the steady state (open
loop at S), then offer 4 x S (open loop). Reports accepted events/s, the
accepted events' p99 against the steady p99 (target: <= 2x), the 429s, other
failures, whether the host is still ready, and its peak RSS.

Usage: python3 bench/overload.py [--smoke] [STEPHOST] [LOADGEN]
  --smoke: one-second phases, one configuration (keeps the script from rotting)
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

args = [a for a in sys.argv[1:] if a != "--smoke"]
smoke = "--smoke" in sys.argv
binary = args[0] if args else "target/release/stephost"
loadgen = args[1] if len(args) > 1 else "target/release/examples/loadgen"
phase = 1.0 if smoke else 15.0

CONFIGS = [
    ("defaults (--max-running = --max-queue = the CPUs, --max-burst 64, --max-in-flight 256)", []),
    ("--max-burst 2 (no room for bursts: the queue is always cut to --max-queue)",
     ["--max-burst", "2"]),
    ("--max-running 4 --max-queue 4 (two events per core running, as many waiting)",
     ["--max-running", "4", "--max-queue", "4"]),
    ("--max-running 256 (no running limit: every event in flight runs at once)",
     ["--max-running", "256"]),
]
if smoke:
    CONFIGS = CONFIGS[:1]


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(url):
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
            return r.status == 200
    except Exception:
        return False


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return -1


def load(url, label, **kw):
    cmd = [loadgen, "--url", url + "/", "--label", label]
    for k, v in kw.items():
        cmd += ["--" + k, str(v)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


rows = []
for name, flags in CONFIGS:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()
    host = subprocess.Popen([binary, "serve", "--port", str(port), *flags],
                            stdout=log, stderr=log)
    try:
        deadline = time.time() + 120
        while not ready(url):
            if time.time() > deadline or host.poll() is not None:
                log.seek(0)
                sys.exit("host did not become ready:\n" + log.read().decode()[-2000:])
            time.sleep(0.2)
        load(url, "warm-up", concurrency=4, seconds=min(phase, 3))
        closed = load(url, "closed", concurrency=4, seconds=phase)
        sustainable = 0.8 * closed["accepted_per_s"]
        steady = load(url, "steady", rate=round(sustainable, 1), seconds=phase)
        over = load(url, "4x", rate=round(4 * sustainable, 1), seconds=phase)
        alive = host.poll() is None and ready(url)
        rows.append((name, closed, sustainable, steady, over, alive, peak_rss_mib(host.pid)))
    finally:
        host.terminate()
        host.wait(timeout=60)

print(f"phases of {phase:.0f} s; open loop; latency from each event's scheduled send time")
print()
print("| host configuration | max (closed, 4 clients) | S = 80 % | steady p50 / p99 at S | offered 4 x S | accepted/s | 429 | other failures | accepted p50 / p99 | p99 ÷ steady p99 | still ready | peak RSS |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, closed, s, steady, over, alive, rss in rows:
    others = sum(v for k, v in over["statuses"].items() if not k.startswith("2") and k != "429")
    others += sum(v for k, v in steady["statuses"].items() if not k.startswith("2"))
    ratio = over["p99_ms"] / steady["p99_ms"]
    print(f"| {name} | {closed['accepted_per_s']:.0f} ev/s | {s:.0f} ev/s "
          f"| {steady['p50_ms']:.1f} / {steady['p99_ms']:.1f} ms | {4 * s:.0f} ev/s "
          f"| {over['accepted_per_s']:.0f} | {over['statuses'].get('429', 0)} | {others} "
          f"| {over['p50_ms']:.1f} / {over['p99_ms']:.1f} ms | **{ratio:.2f}x** "
          f"| {'yes' if alive else 'NO'} | {rss} MiB |")
    if not alive:
        sys.exit(f"{name}: the host did not survive the overload")
    if others:
        print(f"  {name}: non-429 failures: steady {steady['statuses']}, 4x {over['statuses']}")
