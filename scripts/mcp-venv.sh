#!/usr/bin/env bash
# Makes the Python venv with the stock MCP client (PyPI `mcp`) that the MCP
# tests drive `omp-discord mcp` with: $1, else $CARGO_TARGET_DIR/mcp-venv,
# else target/mcp-venv. Quick when it is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

MCP_VERSION=2.3.0
venv="${1:-${CARGO_TARGET_DIR:-$PWD/target}/mcp-venv}"
if "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$MCP_VERSION')" 2>/dev/null; then
    exit 0
fi
if ! python3 -m venv "$venv" 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q "mcp==$MCP_VERSION"
