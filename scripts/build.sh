#!/usr/bin/env bash
# Builds everything from a fresh clone: installs the toolchain pieces this
# project needs (wasm target, wasm-pack, a wasm-bindgen-cli matching the
# crate, Bun and omp from npm), then the wasm module, the plugin bundle
# (dist/index.js) and the release binary. Re-running it is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_PACK_VERSION=0.15.1
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# The interactive setup test drives a real terminal through tmux.
if ! command -v tmux >/dev/null; then
  log "installing tmux (Debian package; for the interactive setup test)"
  if [ "$(id -u)" = 0 ]; then apt-get update && apt-get install -y tmux; else sudo apt-get update && sudo apt-get install -y tmux; fi
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "installing the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(wasm-pack --version 2>/dev/null || true)" != "wasm-pack $WASM_PACK_VERSION" ]; then
  log "installing wasm-pack $WASM_PACK_VERSION (once; cached in ~/.cargo/bin)"
  cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked
fi

# wasm-bindgen-cli must be exactly the wasm-bindgen version in Cargo.lock.
# (--locked is left out: one of its locked dependencies is missing from the
# registry mirror these machines use; the version pin is what matters.)
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $bindgen_version" ]; then
  log "installing wasm-bindgen-cli $bindgen_version (once; cached in ~/.cargo/bin)"
  cargo install wasm-bindgen-cli --version "$bindgen_version" --force
fi

# Bun and omp are pinned devDependencies; node_modules is refreshed when the lock file changes.
# (`npm install`, not `npm ci`: the lock cannot list the platform packages of
# other systems that the registry mirror here does not carry, and `npm ci`
# refuses such a lock.)
if [ ! -x node_modules/.bin/omp ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing Bun and omp from npm"
  npm install --no-audit --no-fund
fi
export PATH="$PWD/node_modules/.bin:$PATH"

log "the MCP test client (a venv with PyPI's mcp)"
bash scripts/mcp-venv.sh

log "building the wasm module"
# wasm-opt stays off (see crates/wasm/Cargo.toml): Debian's binaryen corrupts the output.
wasm-pack --quiet build crates/wasm --target web --release --out-dir ../../pkg --no-pack --no-typescript
bun scripts/inline-wasm.ts

log "bundling the plugin (dist/index.js)"
bun build js-shim/index.ts --target bun --format esm --external '@oh-my-pi/*' --outfile dist/index.js

log "building the release binary (target/release/omp-discord)"
cargo build --release --locked --bin omp-discord
