#!/usr/bin/env bash
# Creates (once, and again when its requirements change) a Python venv outside the repo.
# Usage: setup-venv.sh [VENV_DIR REQUIREMENTS_FILE]   (default: the test venv with tests/stack/requirements.txt)
set -euo pipefail
CACHE="${EKS_SYNC_CACHE:-$HOME/.cache/eks-admin-sync}"
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${1:-$CACHE/venv}"
REQ="${2:-$HERE/requirements.txt}"
STAMP="$VENV/.requirements.sha256"
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "[venv] creating $VENV from $REQ" >&2
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip >&2
"$VENV/bin/pip" install --quiet -r "$REQ" >&2
echo "$want" > "$STAMP"
