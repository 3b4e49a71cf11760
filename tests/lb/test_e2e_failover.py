"""End to end failover (gunicorn, 3 workers, Redis): a provider killed and restarted under load
with every request answered, every provider down (503 within the bounded time), caller errors
not retried."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from standin import StandIn
from tests.support.procs import (
    Gateway,
    RedisServer,
    free_port,
    running_standins,
    wait_for,
    write_config,
)

ACQUIRE_TIMEOUT = 1.0
HEALTH_INTERVAL = 0.3
BODY = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def standins() -> Iterator[list[StandIn]]:
    with running_standins(3, "f") as servers:
        yield servers


@pytest.fixture(scope="module")
def gateway(standins: list[StandIn], redis_server: RedisServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = write_config(tmp_path_factory.mktemp("failover"), {
        "m": [{"id": f"f{i}", "api_host": s.url, "api_type": "openai"}
              for i, s in enumerate(standins[:2])],
        "caller": [{"id": "c0", "api_host": standins[2].url, "api_type": "openai"},
                   {"id": "c1", "api_host": standins[2].url, "api_type": "openai"}],
        "down": [{"id": f"d{i}", "api_host": f"http://127.0.0.1:{free_port()}",
                  "api_type": "openai"} for i in range(2)],
    })
    server = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKERS_COUNT="3",
                     LLM_ROUTER_REDIS_HOST="127.0.0.1",
                     LLM_ROUTER_REDIS_PORT=str(redis_server.port),
                     LLM_ROUTER_REDIS_PREFIX="failover:", LLM_ROUTER_LEASE_TTL="2",
                     LLM_ROUTER_COOLDOWN="0.5", LLM_ROUTER_HEALTH_INTERVAL=str(HEALTH_INTERVAL),
                     LLM_ROUTER_ACQUIRE_TIMEOUT=str(ACQUIRE_TIMEOUT),
                     LLM_ROUTER_EXTERNAL_TIMEOUT="2")
    yield server
    server.stop()


def chat(gateway: Gateway, model: str) -> requests.Response:
    return requests.post(gateway.url + "/v1/chat/completions", json={**BODY, "model": model},
                         timeout=15)


class Load:
    """``threads`` callers sending requests back to back until ``stop``."""

    def __init__(self, gateway: Gateway, threads: int = 4) -> None:
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=threads)
        self._runs = [self._pool.submit(self._run, gateway) for _ in range(threads)]

    def _run(self, gateway: Gateway) -> None:
        while not self._stop.is_set():
            self.statuses.append(chat(gateway, "m").status_code)

    def stop(self) -> list[int]:
        self._stop.set()
        for run in self._runs:
            run.result()
        self._pool.shutdown()
        return self.statuses


def test_provider_killed_and_restarted_under_load_loses_no_request(
        gateway: Gateway, standins: list[StandIn]) -> None:
    for s in standins:
        s.reset()
        s.set_behaviour(first_delay=0.05)
    victim = standins[1]
    port = victim.port
    load = Load(gateway)
    try:
        wait_for(lambda: victim.count >= 3, 10, "load on the victim")
        victim.stop()  # killed under load, some of its requests in flight
        served = standins[0].count
        wait_for(lambda: standins[0].count >= served + 10, 10, "load moved to the survivor")
        restarted = StandIn(name="f1-again", port=port)
        restarted.start()
        standins[1] = restarted
        # The health probe brings it back while the load keeps flowing.
        wait_for(lambda: restarted.count >= 3, 3 * (HEALTH_INTERVAL + 2 * 0.5) + 5,
                 "the restarted provider to serve again")
    finally:
        statuses = load.stop()
    # How many requests the load made depends on the machine's speed; what is certain is that the
    # survivor served at least 10 of them (the wait above), and that none failed.
    assert len(statuses) >= 10 and set(statuses) == {200}, statuses


def test_every_provider_down_gives_503_within_the_bounded_time(gateway: Gateway) -> None:
    answers = []
    for _ in range(6):
        started = time.monotonic()
        reply = chat(gateway, "down")
        assert time.monotonic() - started < 3 * ACQUIRE_TIMEOUT
        answers.append(reply.status_code)
        if reply.status_code == 503:
            assert int(reply.headers["Retry-After"]) >= 1
            assert reply.json()["error"]["message"]
    assert answers[0] == 502  # every attempt failed: the last failure's status
    assert 503 in answers  # then every provider cools down: no provider available
    assert set(answers) <= {502, 503}


@pytest.mark.parametrize("status", [400, 422])
def test_caller_errors_are_passed_through_and_not_retried(
        gateway: Gateway, standins: list[StandIn], status: int) -> None:
    standins[2].reset()
    standins[2].set_behaviour(mode="status", status_code=status)
    reply = chat(gateway, "caller")
    assert reply.status_code == status
    assert standins[2].count == 1
    health = requests.get(gateway.url + "/api/health", timeout=10).json()
    assert all(p["healthy"] for p in health["models"]["caller"]["providers"])
