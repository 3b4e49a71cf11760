"""The production configuration all at once: gunicorn with gevent workers, Redis-shared state,
Prometheus metrics, API keys, built-ins — every part patched by gevent working together."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from standin import StandIn
from tests.support.procs import ROOT, Gateway, RedisServer, running_standins, write_config

KEY = "production-key-123456"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def two_upstreams() -> Iterator[list[StandIn]]:
    with running_standins(2, "prod") as servers:
        yield servers


@pytest.fixture(scope="module")
def gateway(two_upstreams: list[StandIn], redis_server: RedisServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config: Path = write_config(tmp_path_factory.mktemp("production"), {
        "m1": [{"id": f"prod-p{i}", "api_host": s.url, "api_type": kind}
               for i, (s, kind) in enumerate(zip(two_upstreams, ("openai", "ollama"),
                                                 strict=True))]})
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_SERVER_WORKERS_COUNT="2", LLM_ROUTER_REDIS_HOST="127.0.0.1",
                     LLM_ROUTER_REDIS_PORT=str(redis_server.port), LLM_ROUTER_MINIMUM="0",
                     LLM_ROUTER_PROMPTS_DIR=str(ROOT / "resources/prompts"),
                     LLM_ROUTER_USE_PROMETHEUS="1", LLM_ROUTER_API_KEYS=KEY,
                     LLM_ROUTER_BALANCE_STRATEGY="weighted")
    yield server
    server.stop()
    assert "Traceback" not in server.output()


def test_everything_together_under_gevent(gateway: Gateway,
                                          two_upstreams: list[StandIn]) -> None:
    for upstream in two_upstreams:
        upstream.reset()
    chat = {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}

    def one(i: int) -> int:
        if i % 3 == 0:
            body = {"model_name": "m1", "texts": ["a b", "c d", "e f"], "stream": i % 2 == 0}
            return requests.post(gateway.url + "/api/builtin/simplify_text", json=body,
                                 headers=AUTH, timeout=20).status_code
        return requests.post(gateway.url + "/v1/chat/completions", headers=AUTH, timeout=20,
                             json={**chat, "stream": i % 2 == 0}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(one, range(24)))
    assert statuses == [200] * 24
    # 16 chats + 8 built-ins x 3 texts = 40 model calls, split evenly by weighted round-robin
    # across both workers (the rotation lives in Redis).
    counts = sorted(upstream.count for upstream in two_upstreams)
    assert sum(counts) == 40 and counts[1] - counts[0] <= 2
    health = requests.get(gateway.url + "/api/health", timeout=5).json()
    assert all(p["in_flight"] == 0 for p in health["models"]["m1"]["providers"])
    metrics = requests.get(gateway.url + "/metrics", timeout=5).text
    assert 'llm_router_provider_calls_total{model="m1",provider="prod-p1"}' in metrics
