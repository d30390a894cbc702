#!/usr/bin/env bash
# Runs tests/web/check.py against a running emulator; installs Debian chromium if missing.
# Usage: check.sh http://127.0.0.1:PORT   (expects $venv with aiohttp, from test-emulator.sh)
set -euo pipefail
if ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
here="$(dirname "$0")"
shot="${CARGO_TARGET_DIR:-target}/emulator-web-view.png"
"${venv:?set by scripts/test-emulator.sh}/bin/python" "$here/check.py" "$1" "$shot"
echo "screenshot: $shot"
