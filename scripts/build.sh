#!/usr/bin/env bash
# Builds everything from a fresh clone: installs the toolchain pieces this
# project needs (wasm target, wasm-pack, a wasm-bindgen-cli matching the
# crate, Bun and omp from npm), then the wasm module, the plugin bundle
# (dist/index.js) and the release binary. Re-running it is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_PACK_VERSION=0.15.1
log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Debian packages some tests need: tmux drives a real terminal for the
# interactive setup test; Chromium takes the demo's screenshot; OpenSSH forwards the sidecar's socket for the
# several-machines test (a private sshd on loopback; no system service is started).
missing=()
command -v tmux >/dev/null || missing+=(tmux)
# Chromium takes the demo's screenshot of the emulator's web view (`omp-discord-demo --screenshot`, its test).
{ command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } || missing+=(chromium)
# ...and its emoji (✅, ⏹️, 📨 in the thread) need a color emoji font, or they show as boxes.
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
{ [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null; } || missing+=(openssh-server)
{ command -v ssh >/dev/null && command -v ssh-keygen >/dev/null; } || missing+=(openssh-client)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (Debian packages; for the setup, demo and several-machines tests)"
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  # The tests run their own sshd: keep the package from starting (or enabling)
  # a system-wide one. policy-rc.d is Debian's switch for that; an existing one is kept.
  own_policy=
  if [[ " ${missing[*]} " == *" openssh-server "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  if [ -n "$own_policy" ]; then
    "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    if [ -d /run/systemd/system ]; then
      "${sudo[@]}" systemctl disable ssh.service ssh.socket >/dev/null 2>&1 || true
    fi
  fi
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
# Its declarations (pkg/*.d.ts) name core's types, generated into js-shim/generated/types.ts.
wasm-pack --quiet build crates/wasm --target web --release --out-dir ../../pkg --no-pack
bun scripts/inline-wasm.ts

log "bundling the plugin (dist/index.js)"
bun build js-shim/index.ts --target bun --format esm --external '@oh-my-pi/*' --outfile dist/index.js

log "building the release binary (target/release/omp-discord)"
cargo build --release --locked --bin omp-discord
# Built apart from omp-discord, so that the shipped binary's dependencies get no features only these use.
log "building the demo and the Discord emulator (target/release/omp-discord-demo, omp-discord-emulator)"
cargo build --release --locked -p omp-discord-demo -p omp-discord-emulator --bins
