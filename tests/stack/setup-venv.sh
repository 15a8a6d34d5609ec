#!/usr/bin/env bash
# Creates (once) the Python venv with the AWS emulator and test tools, outside the repo.
set -euo pipefail
CACHE="${EKS_SYNC_CACHE:-$HOME/.cache/eks-admin-sync}"
VENV="$CACHE/venv"
HERE="$(cd "$(dirname "$0")" && pwd)"
REQ="$HERE/requirements.txt"
STAMP="$VENV/.requirements.sha256"
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "[venv] creating $VENV" >&2
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip >&2
"$VENV/bin/pip" install --quiet -r "$REQ" >&2
echo "$want" > "$STAMP"
