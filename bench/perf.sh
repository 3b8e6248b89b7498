#!/usr/bin/env bash
# The performance suite (issue #8): stephost vs http-chain, python-peer and
# native in-process, P1-P7, printed as Markdown tables (bench/perf.py).
# Usage: bench/perf.sh [--smoke] [--only P2,P3,...]   (from anywhere; builds and
# installs what it needs: the release binary and examples, the Python peer's
# packages in bench/.venv, and Debian's nginx for P2's HTTP floor). A full run takes about 15 minutes on 2 cores; --smoke (1 s
# phases, no criterion, no cold start) takes well under a minute after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin stephost \
  --example loadgen --example chain_dispatcher --example native_pipeline
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light >/dev/null
fi
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
fi
bench/.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  -r bench/python_peer.requirements.txt
exec python3 bench/perf.py --venv-python bench/.venv/bin/python "$@"
