#!/usr/bin/env bash
# The one entry point of the benchmarks: runs every one of them and prints a
# summary. They live in benches/ (the Rust ones, which `cargo bench` also runs,
# the Bun and shell ones, and the committed results), except the native
# redaction benchmark, an example of the core crate (it shares the core tests'
# redaction corpus): crates/core/examples/redact_bench.rs. Needs
# `bash scripts/build.sh` first (pkg/, dist/, node_modules). Benchmarks print
# numbers and ratios; nothing here asserts a timing.
#
#   bash benches/run.sh [--quick] [--out DIR] [--markdown FILE]
#
# --markdown FILE: also write the report there (BENCHMARKS.md at the repository's root).
#
# --quick: smaller sizes (10 MB log, 200 notifications, 2,000 drained,
# 200 replies, 5 gateway drops, a 2,000-notification soak, 5 start-up pairs) for a smoke run. Results (logs and JSON) go to DIR
# (default: a temporary directory, printed at the end and removed unless --out).
# Rust benches build in $CARGO_TARGET_DIR (default target/benches, relative to
# the repository: apart from target/release, so they do not disturb what the
# tests use).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/benches}

quick=0 out="" markdown="" command="bash benches/run.sh $*"
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --out) out=$2; shift ;;
    --markdown) markdown=$2; shift ;;
    *) echo "usage: bash benches/run.sh [--quick] [--out DIR] [--markdown FILE]" >&2; exit 2 ;;
  esac
  shift
done
if [ "$quick" = 1 ]; then
  size_mb=10 runs=3 notifications=200 drain=2000 sessions=10 pairs=5 replies=200 drops=5 omp_replies=10 soak=2000
else
  size_mb=50 runs=5 notifications=1000 drain=10000 sessions=20 pairs=20 replies=500 drops=20 omp_replies=50 soak=100000
fi

work=$(mktemp -d -t omdbench.XXXXXX)
keep=${out:+1}
out=${out:-$work/out}
mkdir -p "$out"
cleanup() {
  # Only the jobs this script started (each benchmark cleans up its own children).
  local pids
  pids=$(jobs -p)
  [ -n "$pids" ] && kill $pids 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for f in pkg/omp_discord_wasm_bg.wasm dist/index.js node_modules/.bin/bun; do
  [ -e "$f" ] || { echo "missing $f: run bash scripts/build.sh first" >&2; exit 1; }
done

section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
cat >"$out/meta.json" <<EOF
{"date": "$(date -u '+%Y-%m-%d %H:%M UTC')", "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
 "command": "$command", "cpus": $(nproc), "memory": "$(free -g | awk '/^Mem:/ {print $2 " GiB"}')",
 "load_start": "$load_start", "results": "$out"}
EOF
echo "omp-discord benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (shared; wall-clock numbers are noisy)"

section "redaction, native (crates/core/examples/redact_bench.rs)"
log=$work/redact-log.txt
cargo run --quiet --release --locked -p omp-discord-core --example redact_bench -- \
  --size-mb "$size_mb" --runs "$runs" --write-log "$log" | sed "s|$work/||" | tee "$out/redact-native.txt"

section "redaction, wasm vs JS RegExp in Bun (benches/redact.ts)"
bun benches/redact.ts "$log" --runs 3 --js-runs 1 --json "$out/redact-wasm.json" | tee "$out/redact-wasm.txt"

section "tool_result handler, ~100 KB output (benches/handler.ts)"
bun benches/handler.ts "$log" --runs 2000 --json "$out/handler.json" | tee "$out/handler.txt"
rm -f "$log"

# The sidecar and the emulator from this checkout, whatever target/ holds (built
# one by one, so that the sidecar's dependencies get no features only the emulator uses).
cargo build --quiet --release --locked -p omp-discord --bin omp-discord
cargo build --quiet --release --locked -p omp-discord-emulator --bin omp-discord-emulator
sidecar=$CARGO_TARGET_DIR/release/omp-discord
export BENCH_SIDECAR_BINARY=$sidecar BENCH_EMULATOR_BINARY=$CARGO_TARGET_DIR/release/omp-discord-emulator

section "sidecar: notify latency, drain, RSS (benches/sidecar.rs)"
# Built with the release profile (as the sidecar is), then run directly.
sidecar_bench=$(cargo build --release --locked -p omp-discord --bench sidecar --message-format=json \
  | grep -o '"executable":"[^"]*sidecar[^"]*"' | tail -1 | cut -d'"' -f4)
"$sidecar_bench" --sidecar "$sidecar" --notifications "$notifications" --drain "$drain" \
  --sessions "$sessions" --json "$out/sidecar.json" | tee "$out/sidecar.txt"

section "inbound: reply latency and recovery after gateway drops (benches/inbound.rs)"
inbound_bench=$(cargo build --release --locked -p omp-discord --bench inbound --message-format=json \
  | grep -o '"executable":"[^"]*inbound[^"]*"' | tail -1 | cut -d'"' -f4)
"$inbound_bench" --sidecar "$sidecar" --messages "$replies" --drops "$drops" \
  --omp-messages "$omp_replies" --json "$out/inbound.json" | tee "$out/inbound.txt"

section "the state file after a soak (benches/soak.rs)"
soak_bench=$(cargo build --release --locked -p omp-discord --bench soak --message-format=json \
  | grep -o '"executable":"[^"]*soak[^"]*"' | tail -1 | cut -d'"' -f4)
"$soak_bench" --notifications "$soak" | tee "$out/soak.txt"

section "omp -p start-up with and without the plugin (benches/startup.sh)"
bash benches/startup.sh "$pairs" | tee "$out/startup.txt"

section "summary"
# The load at the end goes into the report next to the load at the start.
bun -e 'const f = Bun.file(process.argv[1]); const m = await f.json(); m.load_end = process.argv[2]; await Bun.write(f, JSON.stringify(m));' \
  "$out/meta.json" "$(cut -d' ' -f1-3 /proc/loadavg)"
bun benches/summary.ts "$out" ${markdown:+--markdown "$markdown"}
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "$keep" ]; then echo "results in $out"; fi
