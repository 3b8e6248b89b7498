#!/usr/bin/env bash
# Fuzz every target with libFuzzer (cargo fuzz) for a bounded time each.
# Usage: scripts/fuzz.sh [SECONDS=300] [TARGET...]
#
# Installs cargo-fuzz if missing. Builds with RUSTC_BOOTSTRAP=1 (cargo fuzz's
# flags are nightly-only; this machine has one stable toolchain) and without
# a sanitizer (`-s none`): the host is safe Rust (`unsafe_code = "deny"`),
# so the findings are panics, overflows and hangs, which libFuzzer sees
# without ASan, at several times the speed. The working corpus lives in a
# temporary directory seeded from fuzz/seeds/; only the seeds and minimised
# crashes (fuzz/regressions/<target>/) are committed. A crash is copied to
# fuzz/artifacts/<target>/ and makes the script exit 1.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-300}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(cloudevent_binary cloudevent_structured manifest normaliser)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none -O
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
printf '| target | seconds run | executions | exec/s | corpus (start → end) | crashes |\n|---|---|---|---|---|---|\n' > "$work/table"
for target in "${targets[@]}"; do
    mkdir -p "$work/$target" "artifacts/$target"
    start=$(ls "seeds/$target" | wc -l)
    log="$work/$target.log"
    began=$(date +%s)
    set +e
    cargo fuzz run -s none -O "$target" "$work/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"$log" 2>&1
    rc=$?
    set -e
    took=$(( $(date +%s) - began ))
    runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    rate=$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    end=$(ls "$work/$target" | wc -l)
    crashes=$(ls "artifacts/$target" | wc -l)
    printf '| %s | %s | %s | %s | %s → %s | %s |\n' "$target" "$took" "$runs" "$rate" "$start" "$((start + end))" "$crashes" >> "$work/table"
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        status=1
        echo "== $target: exit $rc, crash inputs in fuzz/artifacts/$target/" >&2
        grep -E "panicked|ERROR|SUMMARY" "$log" | head -20 >&2 || true
    fi
done
cat "$work/table"
exit $status
