#!/usr/bin/env bash
# Runs every check on a fresh machine: makes .venv hold the project with its test tools at the
# versions pinned in constraints.txt (scripts/ensure-venv.sh: installs only when missing or when
# the dependency set changed, and retries a failed install), then ruff, mypy and pytest.
# Extra arguments go to pytest (e.g. ./run-tests.sh -k lb).
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
scripts/ensure-venv.sh api,metrics,test
echo "== ruff" && .venv/bin/ruff check llm_router_api llm_router_lib standin tests bench scripts
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && .venv/bin/python -m pytest "$@"
