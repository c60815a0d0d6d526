#!/usr/bin/env bash
# Creates .venv-sam with Python 3.13 and the pinned AWS SAM CLI (requirements-sam.txt).
#
# A venv of its own: the SAM CLI pins its own versions of boto3, cfn-lint, pydantic, ...
# that would fight the dev venv's pins. Python 3.13 exactly, because `sam build` builds
# the python3.13 functions with a `python3.13` it finds on PATH: `make build` puts
# .venv-sam/bin first on PATH, which provides both `sam` and `python3.13`.
# Idempotent: a second run with unchanged requirements does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-sam
STAMP="$VENV/.requirements.sha256"
want=$(sha256sum requirements-sam.txt | cut -d' ' -f1)

if [ -x "$VENV/bin/sam" ] && [ -x "$VENV/bin/python3.13" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

pick_python313() {
  local candidates=()
  if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$' | sort -V -r); do
      candidates+=("$(pyenv root)/versions/$v/bin/python3.13")
    done
  fi
  candidates+=(python3.13 python3)
  for c in "${candidates[@]}"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python3.13" ]; then
  rm -rf "$VENV"
  py=$(pick_python313) || {
    echo "stockhold: make build needs Python 3.13 (sam build runs python3.13 for the python3.13 runtime);" >&2
    echo "  install it (e.g. pyenv install 3.13, or your OS's python3.13 package) and run make build again" >&2
    exit 1
  }
  echo "==> creating $VENV with $("$py" --version) ($py)"
  "$py" -m venv "$VENV"
fi
echo "==> installing the AWS SAM CLI into $VENV (requirements-sam.txt)"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements-sam.txt
echo "$want" > "$STAMP"
echo "==> $("$VENV/bin/sam" --version) ready in $VENV"
