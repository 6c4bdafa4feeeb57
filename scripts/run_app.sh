#!/usr/bin/env bash
# Install (first run only) and start the app on its embedded defaults: no API key, no server needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/streamlit run app.py "$@"
