#!/usr/bin/env bash
# Scans every tracked file for real-looking secrets (Discord bot tokens and
# webhook URLs, cloud keys, private keys, ...) with detect-secrets from PyPI,
# in a venv under the target directory. Fails on anything that is not an
# allowlisted fake test value (scripts/secrets/allowlist.json).
#   bash scripts/scan-secrets.sh           # check
#   bash scripts/scan-secrets.sh --allow   # rewrite the allowlist from the current findings (review the diff!)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
venv="$target/secrets-venv"
if ! "$venv/bin/detect-secrets" --version 2>/dev/null | grep -qx '1.5.0'; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q detect-secrets==1.5.0
fi
scan="$(mktemp)"
trap 'rm -f "$scan"' EXIT
# Entropy-only plugins are off: lockfile hashes and ids would drown the signal;
# every format with a shape (and KeywordDetector for `password = ...`) stays on.
git ls-files -z | xargs -0 "$venv/bin/detect-secrets" scan \
    --disable-plugin Base64HighEntropyString --disable-plugin HexHighEntropyString \
    --exclude-files '^scripts/secrets/allowlist\.json$' \
    --plugin scripts/secrets/discord_webhook.py > "$scan"
if [[ "${1:-}" == "--allow" ]]; then
    "$venv/bin/python" - "$scan" > scripts/secrets/allowlist.json <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
allowed = sorted(
    ({"filename": name, "type": f["type"], "hashed_secret": f["hashed_secret"]} for name, fs in results.items() for f in fs),
    key=lambda e: (e["filename"], e["type"], e["hashed_secret"]),
)
unique = [dict(t) for t in dict.fromkeys(tuple(e.items()) for e in allowed)]
print(json.dumps({"about": "fake test values only; see docs/testing.md", "allowed": unique}, indent=2))
PY
    echo "wrote scripts/secrets/allowlist.json"
    exit 0
fi
"$venv/bin/python" scripts/secrets/check.py "$scan" scripts/secrets/allowlist.json
