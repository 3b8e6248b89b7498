#!/usr/bin/env bash
# Runs every test: installs the Python CloudEvents SDK the tests use as a real
# client, then the Rust unit and end-to-end tests (release profile: the tests
# compile Wasm components with Cranelift, which is slow unoptimised).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  -r tests/python/requirements.txt
cargo test --release -p stephost -p content-filter-core "$@"
