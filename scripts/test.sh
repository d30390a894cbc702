#!/usr/bin/env bash
# Runs every test: formatting and lints, Rust unit and integration tests
# (the real sidecar, the emulator on loopback, the real omp with a scripted
# model), the wasm module from Bun, and the emulator's client tests.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

bash scripts/build.sh
export PATH="$PWD/node_modules/.bin:$PATH"

log "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
cargo build -p omp-discord-core --target wasm32-unknown-unknown --locked --quiet

log "secrets scan (detect-secrets over the tracked files)"
bash scripts/scan-secrets.sh

log "Rust tests (unit, doc, integration, end-to-end with omp)"
cargo test --workspace --locked

log "the shim's types (tsc --noEmit, strict, against core's generated types)"
(cd js-shim && tsc --noEmit -p .)

log "wasm tests from Bun"
(cd js-shim && bun test)

if [ -f scripts/test-emulator.sh ]; then
  log "emulator client tests"
  bash scripts/test-emulator.sh
fi
log "all tests passed"
