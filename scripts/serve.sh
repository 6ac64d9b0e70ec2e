#!/usr/bin/env bash
# Install clinvk into .venv and run the server (arguments go to `clinvk serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
exec .venv/bin/clinvk serve "$@"
