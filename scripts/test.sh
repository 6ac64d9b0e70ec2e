#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: Python deps, the pinned CLIs, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
./scripts/install-clis.sh
exec .venv/bin/python -m pytest "$@"
