#!/usr/bin/env bash
# Starts llm-router with a production server: gunicorn with gevent workers by default.
# On a fresh machine it first creates .venv and installs the service (.[api,metrics]) at the
# versions pinned in constraints.txt; a failed install is retried on the next run, and a changed
# dependency set is re-installed (scripts/ensure-venv.sh).
# Every LLM_ROUTER_* variable you set wins over the defaults below.
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-venv.sh api,metrics
export LLM_ROUTER_SERVER_TYPE="${LLM_ROUTER_SERVER_TYPE:-gunicorn}"
export LLM_ROUTER_SERVER_WORKER_CLASS="${LLM_ROUTER_SERVER_WORKER_CLASS:-gevent}"
export LLM_ROUTER_MODELS_CONFIG="${LLM_ROUTER_MODELS_CONFIG:-resources/configs/models-config.json}"
export LLM_ROUTER_PROMPTS_DIR="${LLM_ROUTER_PROMPTS_DIR:-resources/prompts}"
exec .venv/bin/python -m llm_router_api.rest_api "$@"
