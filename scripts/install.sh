#!/usr/bin/env bash
# Install the app into ./.venv (idempotent). Usage: scripts/install.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
REQ=requirements.txt
[ "${1:-}" = "--dev" ] && REQ=requirements-dev.txt
STAMP=".venv/.installed-$(cat "$REQ" requirements.txt requirements-nodeps.txt constraints.txt | sha256sum | cut -c1-16)-$(basename "$REQ")"
if [ ! -f "$STAMP" ]; then
  .venv/bin/pip install --disable-pip-version-check -q -r "$REQ" -c constraints.txt
  # BERTopic without its declared deps: they pull torch and sentence-transformers, which we never use.
  .venv/bin/pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt -c constraints.txt
  touch "$STAMP"
fi
