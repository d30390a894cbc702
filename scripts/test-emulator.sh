#!/usr/bin/env bash
# Tests the Discord emulator: its Rust tests, stock discord.py against it, and the web view
# in headless Chromium. Installs what it needs (a venv with discord.py, Debian chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== emulator: cargo tests"
cargo test -p omp-discord-emulator

echo "== emulator: discord.py 2.7.1"
cargo build -p omp-discord-emulator --bin omp-discord-emulator
venv="$CARGO_TARGET_DIR/emulator-venv"
if ! "$venv/bin/python" -c 'import discord, sys; sys.exit(discord.__version__ != "2.7.1")' 2>/dev/null; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q discord.py==2.7.1
fi

workdir="$(mktemp -d)"
emulator_pid=""
cleanup() {
    if [ -n "$emulator_pid" ]; then kill "$emulator_pid" 2>/dev/null || true; fi
    rm -rf "$workdir"
}
trap cleanup EXIT

start_emulator() {
    # A stale line from an earlier run must not be mistaken for this one's.
    rm -f "$workdir/emulator.out"
    "$CARGO_TARGET_DIR/debug/omp-discord-emulator" >"$workdir/emulator.out" 2>"$workdir/emulator.err" &
    emulator_pid=$!
    for _ in $(seq 1 100); do
        if grep -qs '^listening on ' "$workdir/emulator.out"; then break; fi
        if ! kill -0 "$emulator_pid" 2>/dev/null; then cat "$workdir/emulator.err"; exit 1; fi
        read -r -t 0.1 <> <(:) || true
    done
    base_url="$(sed -n 's/^listening on //p' "$workdir/emulator.out")"
    [ -n "$base_url" ] || { echo "the emulator did not start"; exit 1; }
}

start_emulator
"$venv/bin/python" crates/emulator/tests/discord_py/check.py "$base_url"
kill "$emulator_pid"; wait "$emulator_pid" 2>/dev/null || true; emulator_pid=""

if [ -f crates/emulator/tests/web/check.sh ]; then
    echo "== emulator: web view in headless chromium"
    start_emulator
    venv="$venv" bash crates/emulator/tests/web/check.sh "$base_url"
fi
