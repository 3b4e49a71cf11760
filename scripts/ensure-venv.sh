#!/usr/bin/env bash
# Makes .venv hold this project (editable) with the given extras, pinned by constraints.txt:
#
#     scripts/ensure-venv.sh api,metrics        # what run-rest-api.sh needs
#     scripts/ensure-venv.sh api,metrics,test   # what run-tests.sh needs
#
# Idempotent and self-healing:
# - an install is recorded in a stamp file only after pip (and `pip check`) succeeded, so a
#   failed or interrupted install is simply done again on the next run;
# - the stamp holds a hash of pyproject.toml, constraints.txt and the extras, so a changed
#   dependency set is re-installed;
# - a .venv whose python or pip does not work (say, a venv creation that failed) is re-created.
# PYTHON picks the interpreter for a new .venv (default python3, 3.10+).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:?usage: scripts/ensure-venv.sh EXTRAS (e.g. api,metrics)}"
python="${PYTHON:-python3}"
stamp=".venv/.installed-${extras//,/-}"
key="$(cat pyproject.toml constraints.txt <(echo "$extras") | "$python" -c \
    'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && .venv/bin/python -c '' 2>/dev/null; then
    exit 0
fi
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    echo "== creating .venv with $python" >&2
    rm -rf .venv
    "$python" -m venv .venv
fi
rm -f .venv/.installed-*  # every earlier record is void until this install has succeeded
echo "== installing .[$extras] into .venv (versions pinned by constraints.txt)" >&2
# pip's exit status is kept; only this machine's noise about absent local indexes is dropped.
.venv/bin/python -m pip install -q -c constraints.txt -e ".[$extras]" \
    2> >(grep -v '^WARNING: Location' >&2)
.venv/bin/python -m pip check >/dev/null
echo "$key" > "$stamp"
