#!/usr/bin/env bash
# Runs every test: installs the CloudEvents SDKs the tests use as real
# clients (Python 2.x and 1.x from PyPI, JavaScript 10 and 8 from npm), a
# real OCI registry (Debian's docker-registry) and the Python and JavaScript
# step toolchains (componentize-py, jco), then
# the Rust unit and end-to-end tests (release profile: the tests compile Wasm
# components with Cranelift, which is slow unoptimised).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  -r tests/python/requirements.txt
# The previous major line of the Python SDK, beside it (PYTHONPATH in the tests).
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  --upgrade --target target/test-clients/python-cloudevents-1 -r tests/python/requirements-1.txt
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
# A real OCI registry for the oci:: tests (Debian's docker-registry: the CNCF
# distribution registry) and htpasswd for its auth case.
if ! command -v docker-registry >/dev/null || ! command -v htpasswd >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker-registry apache2-utils >/dev/null
fi
# The Python and JavaScript example steps, built with componentize-py (PyPI)
# and jco (npm), their native unit tests run first (tests/all/polyglot.rs
# and the scaffold tests use them and their toolchains).
guests/build-polyglot.sh
# Compile the built-in guests once into the compile cache, so the many test
# hosts that load them start in milliseconds instead of all running Cranelift
# on the 20 MB content filter at the same time.
cargo run --release --quiet -- validate manifests/default-sequence.yaml
cargo test --release -p stephost -p content-filter-core -p sentiment-core -p stephost-guest -p appender "$@"
# Smoke run of the overload benchmark (1 s phases): keeps bench/overload.py
# and the load generator (built by `cargo test` above) from rotting.
python3 bench/overload.py --smoke target/release/stephost target/release/examples/loadgen
# Smoke run of the performance suite (bench/perf.sh --smoke: 1 s phases, the
# fused host, http-chain, the Python onnxruntime peer, native, start-up):
# every server and script of it must still work and agree on their answers.
bench/perf.sh --smoke
