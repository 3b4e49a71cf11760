#!/usr/bin/env bash
# Runs every check on a fresh machine: creates .venv when missing, installs the project with its
# test tools, then ruff, mypy and pytest. Extra arguments go to pytest (e.g. ./run-tests.sh -k lb).
# Tests that need Redis start their own private redis-server; it is installed with apt when
# missing (as root, or with sudo).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v redis-server >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "== installing redis-server (apt)"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install -q -e ".[api,metrics,test]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip check >/dev/null 2>&1 || true
echo "== ruff" && .venv/bin/ruff check llm_router_api llm_router_lib standin tests bench
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && .venv/bin/python -m pytest "$@"
