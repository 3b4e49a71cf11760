#!/usr/bin/env bash
# Runs every check on a fresh machine: makes .venv hold the project with its test tools at the
# versions pinned in constraints.txt (scripts/ensure-venv.sh: installs only when missing or when
# the dependency set changed, and retries a failed install), then ruff, mypy and pytest.
# Extra arguments go to pytest (e.g. ./run-tests.sh -k lb).
# Tests that need Redis start their own private redis-server (and redis-sentinel, for the
# failover test), and the console's browser tests drive Debian's chromium (headless, through
# Playwright; `playwright install` is never run); each is installed with apt when missing (as
# root, or with sudo).
set -euo pipefail
cd "$(dirname "$0")"
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v redis-sentinel >/dev/null 2>&1 || missing="$missing redis-sentinel"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "== installing$missing (apt)"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
scripts/ensure-venv.sh api,metrics,test
echo "== ruff" && .venv/bin/ruff check llm_router_api llm_router_lib standin tests bench scripts
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && .venv/bin/python -m pytest "$@"
