FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LLM_ROUTER_SERVER_TYPE=gunicorn \
    LLM_ROUTER_SERVER_WORKER_CLASS=gevent \
    LLM_ROUTER_SERVER_HOST=0.0.0.0 \
    LLM_ROUTER_SERVER_PORT=8080 \
    LLM_ROUTER_SERVER_WORKERS_COUNT=2 \
    LLM_ROUTER_SERVER_THREADS_COUNT=8 \
    LLM_ROUTER_EP_PREFIX=/api \
    LLM_ROUTER_DEFAULT_EP_LANGUAGE=pl \
    LLM_ROUTER_EXTERNAL_TIMEOUT=300 \
    LLM_ROUTER_TIMEOUT=0 \
    LLM_ROUTER_LOG_LEVEL=INFO \
    LLM_ROUTER_BALANCE_STRATEGY=balanced \
    LLM_ROUTER_MODELS_CONFIG=/app/resources/configs/models-config.json \
    LLM_ROUTER_PROMPTS_DIR=/app/resources/prompts

WORKDIR /app
RUN useradd --create-home --uid 10001 llmrouter
COPY pyproject.toml README.md LICENSE ./
COPY llm_router_lib ./llm_router_lib
COPY llm_router_api ./llm_router_api
RUN pip install --no-cache-dir ".[api,metrics]"
COPY resources ./resources

USER llmrouter
EXPOSE 8080
CMD ["python", "-m", "llm_router_api.rest_api"]
