#!/usr/bin/env bash
# Creates .venv with Python 3.13 (3.11+ accepted) and installs the pinned dev
# requirements. Idempotent: a second run with unchanged requirements does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP="$VENV/.requirements.sha256"
want=$(cat requirements-dev.txt layers/stockhold/requirements.txt layers/stockhold/requirements.lock.txt | sha256sum | cut -d' ' -f1)

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

pick_python() {
  local candidates=()
  if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.|$)' | sort -V -r); do
      candidates+=("$(pyenv root)/versions/$v/bin/python3")
    done
  fi
  candidates+=(python3.13 python3.12 python3.11 python3)
  for c in "${candidates[@]}"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  py=$(pick_python) || { echo "stockhold: need Python 3.11+ (3.13 preferred); none found" >&2; exit 1; }
  echo "==> creating $VENV with $("$py" --version) ($py)"
  "$py" -m venv "$VENV"
fi
echo "==> installing pinned Python dependencies into $VENV (requirements-dev.txt)"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
# The layer's lock as constraints, so tests run the versions the layer ships. Without its
# hashes: pip would otherwise demand hashes for every other dev requirement too.
sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*==[^ \\]*\).*/\1/p' layers/stockhold/requirements.lock.txt > "$VENV/layer-constraints.txt"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements-dev.txt -c "$VENV/layer-constraints.txt"
echo "$want" > "$STAMP"
echo "==> Python environment ready: $("$VENV/bin/python" --version)"
