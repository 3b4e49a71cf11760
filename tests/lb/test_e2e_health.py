"""Health end to end (SPEC §13) under gunicorn (2 workers) sharing Redis: a provider whose model
list answers while generation fails (500) or hangs is not let back in every HEALTH_INTERVAL —
its cool-down really doubles; it comes back by generating; a success that began before the
latest failure does not clear that failure's cool-down."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, RedisServer, running_standins, wait_for, write_config

COOLDOWN = 0.25
HEALTH_INTERVAL = 0.1
EXTERNAL_TIMEOUT = 0.5
WINDOW = 4.0
RETRY_AFTER = 6.0
MODES = ("status", "hang")


@pytest.fixture(scope="module")
def broken() -> Iterator[StandIn]:
    with running_standins(1, "broken") as servers:
        yield servers[0]


@pytest.fixture(scope="module")
def gateway(broken: StandIn, redis_server: RedisServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("health"), {
        **{mode: [{"id": f"{mode}-up", "api_host": broken.url, "api_type": "openai"}]
           for mode in MODES},
        "late": [{"id": "late-up", "api_host": broken.url, "api_type": "openai"}],
    })
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKERS_COUNT="2",
                     LLM_ROUTER_SERVER_WORKER_CLASS="gevent",
                     LLM_ROUTER_REDIS_HOST="127.0.0.1",
                     LLM_ROUTER_REDIS_PORT=str(redis_server.port),
                     LLM_ROUTER_REDIS_PREFIX="health-e2e:", LLM_ROUTER_COOLDOWN=str(COOLDOWN),
                     LLM_ROUTER_HEALTH_INTERVAL=str(HEALTH_INTERVAL),
                     LLM_ROUTER_EXTERNAL_TIMEOUT=str(EXTERNAL_TIMEOUT))
    yield server
    server.stop()


def chat(gateway: Gateway, model: str, text: str = "hi",
         stream: bool = False) -> requests.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    return requests.post(gateway.url + "/v1/chat/completions", json=body, timeout=15)


def generation_arrivals(upstream: StandIn) -> list[float]:
    return [r["at"] for r in upstream.requests if r["method"] == "POST"]


@pytest.mark.parametrize("mode", MODES)
def test_a_provider_that_lists_models_but_cannot_generate_stays_out_doubling(
        gateway: Gateway, broken: StandIn, mode: str) -> None:
    broken.reset()
    broken.set_behaviour(mode=mode, generation_only=True)
    assert requests.get(broken.url + "/v1/models", timeout=5).status_code == 200
    statuses = set()
    until = time.monotonic() + WINDOW
    while time.monotonic() < until:
        statuses.add(chat(gateway, mode).status_code)
        time.sleep(0.02)
    assert statuses <= {502, 503, 504}, statuses
    arrivals = generation_arrivals(broken)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert len(gaps) >= 2, arrivals  # a trial after each cool-down
    for failures, gap in enumerate(gaps, start=1):  # no traffic before the cool-down ends
        assert gap >= 0.9 * COOLDOWN * 2 ** (failures - 1), (failures, gaps)
    # came back by generating: once generation works, the next trial succeeds
    broken.set_behaviour(mode="ok")
    wait_for(lambda: chat(gateway, mode).status_code == 200, 20, "a successful trial")
    assert all(chat(gateway, mode).status_code == 200 for _ in range(5))


def test_a_success_that_began_before_the_failure_does_not_clear_it(
        gateway: Gateway, broken: StandIn) -> None:
    broken.reset()
    broken.set_behaviour(token_delay=0.25, tokens=5)
    outcome: dict[str, requests.Response] = {}
    slow = threading.Thread(target=lambda: outcome.update(r=chat(gateway, "late",
                                                                 stream=True)))
    slow.start()
    wait_for(lambda: broken.count == 1, 5, "the slow request to reach the provider")
    broken.set_behaviour(fail_marker="FAIL-NOW", status_code=429, retry_after=RETRY_AFTER)
    assert chat(gateway, "late", "FAIL-NOW").status_code == 429  # cools down for 6 s
    slow.join(10)
    assert outcome["r"].status_code == 200 and "[DONE]" in outcome["r"].text
    refused = chat(gateway, "late")  # well within the 6 s: the late success cleared nothing
    assert refused.status_code == 503, refused.text
    assert broken.count == 2
