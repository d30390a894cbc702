"""Compares a fresh detect-secrets scan with the committed allowlist.

Usage: python check.py SCAN.json ALLOWLIST.json
Each finding is (file, secret type, hashed secret); line numbers are ignored so
that editing a file does not invalidate the allowlist. Exits 1 on any finding
not in the allowlist, listing file, line and type (never the secret).
"""

import json
import sys

scan = json.load(open(sys.argv[1]))["results"]
allowed = {
    (entry["filename"], entry["type"], entry["hashed_secret"])
    for entry in json.load(open(sys.argv[2]))["allowed"]
}
new = [
    (name, finding["line_number"], finding["type"], finding["hashed_secret"])
    for name, findings in sorted(scan.items())
    for finding in findings
    if (name, finding["type"], finding["hashed_secret"]) not in allowed
]
for name, line, kind, _ in new:
    print(f"{name}:{line}: {kind}", file=sys.stderr)
if new:
    print(
        f"{len(new)} possible secret(s) in tracked files. Remove them (and rotate them if they are real); "
        "a made-up test value must say so in a '// fake' comment and be added to scripts/secrets/allowlist.json "
        "with: bash scripts/scan-secrets.sh --allow",
        file=sys.stderr,
    )
    sys.exit(1)
print(f"secrets scan: {sum(len(f) for f in scan.values())} finding(s), all allowlisted fake test values")
