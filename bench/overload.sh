#!/usr/bin/env bash
# Overload measurement (issue #9): the real host at 4x its sustainable rate.
# Usage: bench/overload.sh [--smoke]   (from anywhere; builds what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin stephost --example loadgen
python3 bench/overload.py "$@" target/release/stephost target/release/examples/loadgen
