#!/usr/bin/env bash
# Proves that a guest written with the SDK builds both ways users build it —
# `cargo build --target wasm32-wasip2` and `cargo component build` — and that
# stephost validates and runs each build (a real event through /steps/appender).
#
# Needs cargo-component (`cargo install cargo-component --locked`, ≈ 20 min on
# 2 cores), so it is not part of CI's test command. Usage: guests/check-build-routes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-component >/dev/null; then
  echo "cargo-component is not installed: cargo install cargo-component --locked" >&2
  exit 2
fi
cargo build --release --bin stephost
cargo build --release --target wasm32-wasip2 -p appender
cargo component build --release -p appender
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=18765
for wasm in target/wasm32-wasip2/release/appender.wasm target/wasm32-wasip1/release/appender.wasm; do
  cat > "$work/m.yaml" <<YAML
apiVersion: stephost.dev/v1alpha1
kind: WasmStep
metadata: {name: appender}
spec:
  component: $PWD/$wasm
  config: {suffix: "-ok"}
YAML
  ./target/release/stephost validate "$work/m.yaml"
  ./target/release/stephost serve --host 127.0.0.1 --port $port -m "$work/m.yaml" >/dev/null 2>"$work/log" &
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  out=$(curl -sf "http://127.0.0.1:$port/steps/appender" -H 'ce-specversion: 1.0' -H 'ce-id: 1' \
        -H 'ce-source: /check' -H 'ce-type: t' -H 'content-type: text/plain' -d 'built')
  kill %1; wait %1 2>/dev/null || true
  [ "$out" = "built-ok" ] || { echo "FAIL $wasm: got '$out'"; cat "$work/log"; exit 1; }
  echo "ok: $wasm ($(stat -c %s "$wasm") bytes) runs in stephost"
  port=$((port + 1))
done
