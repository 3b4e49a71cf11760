# llm-router: gunicorn with gevent workers on 0.0.0.0:8080, as a non-root user.
#   docker build -t llm-router .
#   docker run -p 8080:8080 -v "$PWD/cfg.json:/app/resources/configs/models-config.json:ro" llm-router
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
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

# Dependency layer: only pyproject.toml and the lock, so a code change does not reinstall them:
# the service's requirements (core + api + metrics) at the versions pinned in constraints.txt.
COPY pyproject.toml constraints.txt ./
COPY scripts/requirements.py ./scripts/
RUN python scripts/requirements.py api,metrics > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt -c constraints.txt \
    && rm /tmp/requirements.txt

# The project itself, without touching the dependencies installed above.
COPY README.md LICENSE ./
COPY llm_router_lib ./llm_router_lib
COPY llm_router_api ./llm_router_api
RUN pip install --no-deps .
COPY resources ./resources

USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('LLM_ROUTER_SERVER_PORT', '8080') + os.environ.get('LLM_ROUTER_EP_PREFIX', '/api') + '/ping', timeout=4)"]
CMD ["python", "-m", "llm_router_api.rest_api"]
