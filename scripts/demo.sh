#!/usr/bin/env bash
# Builds everything, then runs the demo (see `omp-discord demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec target/release/omp-discord demo --repo . "$@"
