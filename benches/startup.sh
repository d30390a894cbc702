#!/usr/bin/env bash
# How much the plugin adds to an `omp -p` run: N paired runs (without, with,
# alternating), scripted model, the sidecar and the emulator running.
# Prints medians and the ratio. Usage: bash benches/startup.sh [N]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}
# benches/run.sh passes the sidecar and the emulator it built from this checkout.
bin=$(realpath "${BENCH_SIDECAR_BINARY:-target/release/omp-discord}")
emulator=$(realpath "${BENCH_EMULATOR_BINARY:-target/release/omp-discord-emulator}")
export PATH="$PWD/node_modules/.bin:$PATH"
work=$(mktemp -d -t omd-bench.XXXXXX)
trap 'kill $emu_pid $side_pid 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/home" "$work/tmp"
# Everything private to this run: HOME (and so the state dir) before the
# sidecar starts, or it would open the user's own outbox.
export HOME="$work/home" TMPDIR="$work/tmp" OMP_DISCORD_STATE_DIR="$work/state"
# Waits up to 15 s for a condition, or fails with what it waited for.
wait_for() { local what=$1; shift; for _ in $(seq 300); do "$@" && return 0; sleep 0.05; done; echo "timed out waiting for $what" >&2; exit 1; }

"$emulator" > "$work/emulator.out" &
emu_pid=$!
wait_for "the emulator" grep -qs "OMP_DISCORD_CHANNEL_ID=" "$work/emulator.out"
api=$(sed -n 's/^listening on //p' "$work/emulator.out")
export OMP_DISCORD_API_URL=$api OMP_DISCORD_TOKEN=emulator-token OMP_DISCORD_SOCKET="$work/run/sidecar.sock"
export OMP_DISCORD_CHANNEL_ID=$(grep -o "OMP_DISCORD_CHANNEL_ID=[0-9]*" "$work/emulator.out" | cut -d= -f2)
"$bin" serve 2> "$work/sidecar.log" &
side_pid=$!
wait_for "the sidecar's socket" test -S "$work/run/sidecar.sock"

export OMP_DISCORD_BIN="$bin" OMP_DISCORD_SCRIPT='[{"text":"ok"}]'
run() { # prints milliseconds
  local start end
  start=$(date +%s%N)
  omp -p --mode json --no-session -e tests/fixtures/scripted-model.ts "$@" --model fake/scripted "hi" > /dev/null
  end=$(date +%s%N)
  echo $(( (end - start) / 1000000 ))
}
run > /dev/null; run -e . > /dev/null   # warm caches
without=(); with=()
for _ in $(seq "$N"); do
  without+=("$(run)")
  with+=("$(run -e .)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
m0=$(median "${without[@]}"); m1=$(median "${with[@]}")
echo "omp -p startup+run, median of $N paired runs"
echo "  without plugin: ${m0} ms   (runs: ${without[*]})"
echo "  with plugin:    ${m1} ms   (runs: ${with[*]})"
awk -v a="$m0" -v b="$m1" 'BEGIN { printf "  added: %.0f ms, ratio %.3f\n", b - a, b / a }'
echo "  wasm: $(stat -c %s pkg/omp_discord_wasm_bg.wasm) bytes, bundle: $(stat -c %s dist/index.js) bytes"
