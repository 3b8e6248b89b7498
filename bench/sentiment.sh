#!/usr/bin/env bash
# The sentiment step's benchmark (issue #7): per-event times (criterion:
# native tract, host wasi-nn path, in-guest tract with SIMD, instantiate),
# model load times, then peak RSS of a real host after 1,000 events.
# Usage: bench/sentiment.sh   (from anywhere; builds what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p stephost --bench sentiment 2>&1 | grep -vE "^(Gnuplot|Benchmarking|Found|  [0-9]+ \(|Warning)"
cargo build --release --quiet
python3 bench/sentiment_rss.py target/release/stephost 1000 4
