#!/usr/bin/env bash
# Refreshes constraints.txt, the pinned versions every install of this repository uses
# (run-rest-api.sh, run-tests.sh, .ci/run, the Dockerfile). Run it after changing a dependency
# in pyproject.toml, then commit pyproject.toml and constraints.txt together:
#
#     scripts/lock.sh            # re-resolve, keeping current pins where the ranges allow
#     scripts/lock.sh --upgrade  # move every pin to the newest version the ranges allow
#
# The ranges stay in pyproject.toml (for people who `pip install` the library); the lock is one
# universal resolution (every OS, Python 3.10+) of every extra, made by uv (from PATH, else installed
# into .venv). Extra arguments go to `uv pip compile`.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="$(command -v uv || true)"
if [ -z "$uv" ]; then
    uv=.venv/bin/uv
    if [ ! -x "$uv" ]; then
        scripts/ensure-venv.sh api,metrics,test
        .venv/bin/python -m pip install -q "uv>=0.5"
    fi
fi
exec "$uv" pip compile pyproject.toml --all-extras --universal --python-version 3.10 \
    --no-strip-markers --quiet --custom-compile-command "scripts/lock.sh" \
    --output-file constraints.txt "$@"
