#!/usr/bin/env bash
# No container builder on this machine, so check the Containerfile's stages
# by running them here: the build stage's script as is, then the runtime
# stage's contents as the image would run them — the copied binary alone, as
# uid 65532 when we are root, the cache at its own path, the ConfigMap's
# pipeline — and send a review through it to a stand-in broker.
# Usage: scripts/check-container.sh   (reuses ./target; set CARGO_TARGET_DIR
# to a fresh directory to build from scratch, as the container build does)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
scripts/container-build.sh "$work/out"
echo "build stage: $(du -h "$work/out/stephost" | cut -f1) binary, $(du -sh "$work/out/cache" | cut -f1) compile cache"

# Runtime stage: only the binary and the cache, owned by the runtime user.
mkdir -p "$work/image/usr/local/bin" "$work/image/var/cache" "$work/image/etc/stephost"
cp "$work/out/stephost" "$work/image/usr/local/bin/stephost"
cp -r "$work/out/cache" "$work/image/var/cache/stephost"
cp -r "$work/out/cache-preinit" "$work/image/var/cache/stephost-preinit"
python3 - "$work/image/etc/stephost/pipeline.yaml" <<'PY'
import sys, yaml
cm = yaml.safe_load(open("manifests/configmap.yaml"))
open(sys.argv[1], "w").write(cm["data"]["pipeline.yaml"])
PY
as_user=()
if [ "$(id -u)" = 0 ]; then
  chown -R 65532:65532 "$work/image/var/cache/stephost" "$work/image/var/cache/stephost-preinit"
  chmod -R a+rX "$work"
  as_user=(setpriv --reuid=65532 --regid=65532 --clear-groups)
fi

# A stand-in for the Broker ingress: accepts one event and prints its headers.
python3 - "$work/broker.port" > "$work/broker.log" 2>&1 <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        print(self.path, self.headers.get("ce-type"), self.headers.get("ce-sentimentresult"),
              self.headers.get("ce-badwordfilter"), flush=True)
        self.send_response(202); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_port))
s.serve_forever()
PY
for _ in $(seq 50); do [ -s "$work/broker.port" ] && break; sleep 0.1; done
broker=$(cat "$work/broker.port")

port=18480
start=$(date +%s.%N)
env -i PORT=$port STEPHOST_CACHE_DIR="$work/image/var/cache/stephost" RUST_LOG=info \
  "${as_user[@]}" "$work/image/usr/local/bin/stephost" serve \
  --manifest "$work/image/etc/stephost/pipeline.yaml" --log-format json \
  --broker-ingress "http://127.0.0.1:$broker" > "$work/host.log" 2>&1 &
for _ in $(seq 600); do
  curl -sf "localhost:$port/readyz" >/dev/null && break
  sleep 0.05
done
ready=$(echo "$(date +%s.%N) - $start" | bc)
echo "runtime stage: /readyz after ${ready}s (uid $([ ${#as_user[@]} -gt 0 ] && echo 65532 || id -u))"
status=$(curl -s -o /dev/null -w '%{http_code}' "localhost:$port/" \
  -H 'ce-specversion: 1.0' -H 'ce-id: check-1' -H 'ce-source: /check' \
  -H 'ce-type: new-review-comment' -H 'content-type: application/json' \
  -d '{"reviewText": "I absolutely loved this book"}')
sleep 0.2
echo "event: HTTP $status; broker received: $(cat "$work/broker.log")"
[ "$status" = 202 ] && grep -q "/default/default moderated-comment positive good" "$work/broker.log"
grep -q "snapshot read from the cache" "$work/host.log" \
  || { echo "the baked-in pre-initialisation snapshots were not used"; exit 1; }
echo "ok: the Containerfile's stages work"
