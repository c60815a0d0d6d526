#!/usr/bin/env bash
# Creates .venv-sam with Python 3.13 and the pinned AWS SAM CLI (requirements-sam.txt).
#
# A venv of its own: the SAM CLI pins its own versions of boto3, cfn-lint, pydantic, ...
# that would fight the dev venv's pins. Python 3.13 when there is one: `sam build` builds a
# python3.13 function or layer that has a requirements.txt with a `python3.13` it finds on
# PATH, and `make build` puts .venv-sam/bin first on PATH, which then provides both `sam`
# and `python3.13`. Today nothing needs it (the functions have no requirements.txt and the
# layer is built by make: docs/deploy.md), so 3.11+ will do, with a warning.
# Idempotent: a second run with unchanged requirements does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-sam
STAMP="$VENV/.requirements.sha256"
want=$(sha256sum requirements-sam.txt | cut -d' ' -f1)

if [ -x "$VENV/bin/sam" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

pick_python() {  # $1: the check, e.g. '== (3, 13)'
  local candidates=()
  if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.[0-9]+(\.[0-9]+)?$' | sort -V -r); do
      candidates+=("$(pyenv root)/versions/$v/bin/python3")
    done
  fi
  candidates+=(python3.13 python3)
  for c in "${candidates[@]}"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import sys; sys.exit(not sys.version_info[:2] $1)" 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  rm -rf "$VENV"
  if ! py=$(pick_python '== (3, 13)'); then
    py=$(pick_python '>= (3, 11)') || { echo "stockhold: make build needs Python 3.11+ (3.13 preferred)" >&2; exit 1; }
    echo "==> warning: no Python 3.13; sam build will not find python3.13 on PATH, which it needs only" >&2
    echo "    for a function or layer it builds from a requirements.txt (none today: docs/deploy.md)" >&2
  fi
  echo "==> creating $VENV with $("$py" --version) ($py)"
  "$py" -m venv "$VENV"
fi
echo "==> installing the AWS SAM CLI into $VENV (requirements-sam.txt)"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements-sam.txt
echo "$want" > "$STAMP"
echo "==> $("$VENV/bin/sam" --version) ready in $VENV"
