#!/usr/bin/env bash
# Builds everything, then runs the demo (see `target/release/omp-discord-demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec "${CARGO_TARGET_DIR:-target}/release/omp-discord-demo" --repo . "$@"
