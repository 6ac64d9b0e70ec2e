#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: Python deps, the pinned CLIs, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
./scripts/install-clis.sh
./scripts/install-node-sdks.sh  # the Vercel AI SDK the client tests drive
# System tools some tests use, from Debian (CI runs as root on a fresh machine): chromium
# renders /docs in the browser test, systemd-analyze verifies the shipped unit file, PostgreSQL
# (its programs land in /usr/lib/postgresql/<major>/bin) backs the PostgreSQL session store tests,
# Caddy runs deploy/Caddyfile in the deploy topology test (the package's own service starts only
# under systemd; even then the test's Caddy keeps clear of it: free ports, no admin endpoint,
# its own data folder).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v pg_ctl >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null \
    || missing+=(postgresql)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
