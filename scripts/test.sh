#!/usr/bin/env bash
# Install everything (app, test tools, the browser for end-to-end tests) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
if [ -f scripts/install_system_deps.sh ]; then bash scripts/install_system_deps.sh; fi
.venv/bin/ruff check --quiet . && .venv/bin/ruff format --check --quiet .
export DOCQA_OFFLINE_TESTS=1
exec .venv/bin/python -m pytest "$@"
