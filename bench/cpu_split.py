#!/usr/bin/env python3
"""Split a stephost process's CPU time into the parts of an event's path.

Reads `perf script -F ip,sym` output of a `perf record --call-graph dwarf`
profile (stdin or a file) and attributes every sample to one part: walking
its stack from the leaf up, the first frame that names a part decides (a
`memmove` or `malloc` counts for whoever called it). Prints each part's share
of the samples, and with `--us-per-event` its microseconds per event.

    perf record -e cpu-clock -F 1000 --call-graph dwarf,16384 -p PID -o p.data -- sleep 5
    perf script -i p.data -F ip,sym | bench/cpu_split.py --us-per-event 67

The parts follow issue #22's split: HTTP (hyper, axum, sockets), event
conversion (CloudEvents binding, JSON), admission/metrics/tracing, instances
(wasmtime: instantiate, run, reset), plus the async runtime's own scheduling,
the Sequence's own bookkeeping, memory allocation not claimed by any of these
and the rest. The measured figures are in bench/RESULTS.md.
"""

import argparse
import re
import sys
from collections import Counter

# (part, pattern) in priority order within one frame; frames are tried leaf first.
PARTS = [
    ("event conversion", r"cloudevents|stephost::event::|stephost::runtime::guest_event|serde|"
                         r"base64"),
    # Guest code named by --perfmap comes unmangled-by-perf: _ZN…/_RNv… symbols.
    ("instances (wasmtime)", r"wasmtime|cranelift|wasm\[|stephost::runtime::|rustix::ioctl|"
                             r"pagemap|StepComponent|wasi|^_ZN|^_RNv|module_start"),
    ("admission/metrics/tracing", r"stephost::admission|prometheus_client|stephost::metrics|"
                                  r"tracing_core|tracing_subscriber|tracing::span|"
                                  r"tracing::event|Histogram|Family<"),
    ("HTTP (hyper, axum, sockets)", r"hyper|axum|httparse|\bhttp::|tower|mio::|tokio::net|"
                                    r"tcp_|sock_|__sys_|epoll|ip_|skb|net_rx|writev|readv|recv|"
                                    r"send|bytes::"),
    ("async runtime (tokio scheduling)", r"tokio::|futex|schedule|finish_task_switch|"
                                         r"parking_lot|std::thread"),
    ("sequence/ingress bookkeeping", r"stephost::"),
]
COMPILED = [(name, re.compile(p)) for name, p in PARTS]
# Allocation and copying count for the first caller that names a part; only
# when none does are they a part of their own.
ALLOCATION = ("allocation (unclaimed)", re.compile(
    r"malloc|free|realloc|memmove|memcpy|memset|memcmp|alloc::|raw_vec|drop_in_place<alloc"))
# Wrapper frames that sit above everything and decide nothing.
SKIP = re.compile(r"Instrumented<T>|\[unknown\]|core::ops::function|core::future")


def samples(lines):
    """Yield each sample's frames (leaf first)."""
    frames = []
    for line in lines:
        line = line.strip()
        if not line:
            if frames:
                yield frames
            frames = []
            continue
        parts = line.split(None, 1)
        frames.append(parts[1] if len(parts) > 1 else "")
    if frames:
        yield frames


def part_of(frames):
    allocating = False
    for frame in frames:
        if SKIP.search(frame):
            continue
        if ALLOCATION[1].search(frame):
            allocating = True
            continue
        for name, pattern in COMPILED:
            if pattern.search(frame):
                return name
    return ALLOCATION[0] if allocating else "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", help="perf script output (default: stdin)")
    ap.add_argument("--us-per-event", type=float,
                    help="the process's CPU per event, measured without perf")
    args = ap.parse_args()
    src = open(args.file) if args.file else sys.stdin
    counts = Counter(part_of(f) for f in samples(src))
    total = sum(counts.values())
    if total == 0:
        sys.exit("no samples in the input")
    print(f"| part | share | {'µs/event |' if args.us_per_event else ''}")
    print(f"|---|---|{'---|' if args.us_per_event else ''}")
    for name, n in counts.most_common():
        share = n / total
        extra = f" {share * args.us_per_event:.1f} |" if args.us_per_event else ""
        print(f"| {name} | {100 * share:.1f} % |{extra}")
    print(f"\n{total} samples")


if __name__ == "__main__":
    main()
