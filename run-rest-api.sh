#!/usr/bin/env bash
# Starts llm-router with a production server: gunicorn with gevent workers by default.
# On a fresh machine it first creates .venv and installs the service (.[api,metrics]).
# Every LLM_ROUTER_* variable you set wins over the defaults below.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
    .venv/bin/python -m pip install -q -e ".[api,metrics]" 2>&1 | grep -v "^WARNING: Location" || true
fi
export LLM_ROUTER_SERVER_TYPE="${LLM_ROUTER_SERVER_TYPE:-gunicorn}"
export LLM_ROUTER_SERVER_WORKER_CLASS="${LLM_ROUTER_SERVER_WORKER_CLASS:-gevent}"
export LLM_ROUTER_MODELS_CONFIG="${LLM_ROUTER_MODELS_CONFIG:-resources/configs/models-config.json}"
export LLM_ROUTER_PROMPTS_DIR="${LLM_ROUTER_PROMPTS_DIR:-resources/prompts}"
exec .venv/bin/python -m llm_router_api.rest_api "$@"
