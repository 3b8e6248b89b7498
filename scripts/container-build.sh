#!/usr/bin/env bash
# The Containerfile's build stage: build the host (and, through host/build.rs,
# every guest), warm the compile cache with the guests the default pipeline
# uses, and put the binary and the cache in OUT_DIR.
# Usage: scripts/container-build.sh OUT_DIR
set -euo pipefail
out=${1:?usage: scripts/container-build.sh OUT_DIR}
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked -p stephost
mkdir -p "$out/cache"
STEPHOST_CACHE_DIR="$out/cache" "$target/release/stephost" validate manifests/configmap.yaml
cp "$target/release/stephost" "$out/stephost"
