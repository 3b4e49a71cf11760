"""End to end: two gateway instances (gunicorn with 3 workers, and flask) sharing one Redis, three
stand-in upstreams; which stand-in served each request is counted per strategy. Last, a gunicorn
worker is killed with SIGKILL in the middle of a stream and its slot comes back by lease expiry."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from standin import StandIn
from tests.support.procs import Gateway, RedisServer, running_standins, write_config

LEASE_TTL = 2.0
ACQUIRE_TIMEOUT = 0.5
ADMIN = "admin-secret-token"
WEIGHTS = (3.0, 2.0, 1.0)
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def standins() -> Iterator[list[StandIn]]:
    with running_standins(3, "s") as servers:
        yield servers


@pytest.fixture(scope="module")
def config(standins: list[StandIn], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("lb-e2e"), {
        "m": [{"id": f"p{i}", "api_host": s.url, "api_type": "openai", "weight": w}
              for i, (s, w) in enumerate(zip(standins, WEIGHTS, strict=True))],
        "solo": [{"id": "solo", "api_host": standins[0].url, "api_type": "openai",
                  "max_concurrency": 1}],
    })


Pair = tuple[str, Gateway, Gateway]


@pytest.fixture(scope="module")
def pairs(config: Path, redis_server: RedisServer) -> Iterator[Callable[[str], Pair]]:
    """Per strategy (started on first use): a gunicorn instance with 3 workers and a flask
    instance, sharing one Redis under a fresh prefix."""
    started: dict[str, Pair] = {}

    def pair(strategy: str) -> Pair:
        if strategy not in started:
            env = {"LLM_ROUTER_BALANCE_STRATEGY": strategy,
                   "LLM_ROUTER_REDIS_HOST": "127.0.0.1",
                   "LLM_ROUTER_REDIS_PORT": str(redis_server.port),
                   "LLM_ROUTER_REDIS_PREFIX": f"e2e-{strategy}:",  # a fresh state
                   "LLM_ROUTER_LEASE_TTL": str(LEASE_TTL),
                   "LLM_ROUTER_ACQUIRE_TIMEOUT": str(ACQUIRE_TIMEOUT),
                   "LLM_ROUTER_HEALTH_INTERVAL": "0.5", "LLM_ROUTER_COOLDOWN": "1",
                   "LLM_ROUTER_ADMIN_TOKEN": ADMIN}
            a = Gateway(config, server_type="gunicorn", LLM_ROUTER_SERVER_WORKERS_COUNT="3",
                        LLM_ROUTER_SERVER_THREADS_COUNT="4", **env)
            started[strategy] = (strategy, a, Gateway(config, server_type="flask", **env))
        return started[strategy]

    yield pair
    for _, a, b in started.values():
        a.stop()
        b.stop()
        assert "do not share" not in a.output()


@pytest.fixture()
def ups(standins: list[StandIn]) -> list[StandIn]:
    for s in standins:
        s.reset()
    return standins


def chat(gateway: Gateway, model: str = "m", **extra: object) -> requests.Response:
    return requests.post(gateway.url + "/v1/chat/completions",
                         json={**BODY, "model": model, **extra}, timeout=10)


def counts(standins: list[StandIn]) -> list[int]:
    return [s.count for s in standins]


class Held:
    """A stream the caller keeps open (its reader too: dropping that would close it)."""

    def __init__(self, gateway: Gateway, model: str = "m") -> None:
        self.reply = requests.post(gateway.url + "/v1/chat/completions",
                                   json={**BODY, "model": model, "stream": True}, stream=True,
                                   timeout=10)
        assert self.reply.status_code == 200
        self.reader = self.reply.iter_content(chunk_size=None)
        next(self.reader)  # the stream has started: the slot is taken

    def close(self) -> None:
        self.reply.close()


@pytest.mark.parametrize("strategy", ["weighted", "balanced", "first_available",
                                      "dynamic_weighted"])
def test_sequential_requests_across_instances_follow_the_definition(
        pairs: Callable[[str], Pair], strategy: str, ups: list[StandIn]) -> None:
    _, a, b = pairs(strategy)
    n = 36
    if strategy == "dynamic_weighted":
        # Runtime weights set on one instance drive the other through Redis.
        weights = {"p0": 1000.0, "p1": 0.001, "p2": 0.001}
        put = requests.put(a.url + "/api/admin/weights", json={"model": "m", "weights": weights},
                           headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
        assert put.status_code == 200
    for i in range(n):
        assert chat(a if i % 2 else b).status_code == 200
    served = counts(ups)
    assert sum(served) == n
    if strategy == "weighted":
        for count, w in zip(served, WEIGHTS, strict=True):
            assert abs(count - n * w / sum(WEIGHTS)) <= 1, served
    elif strategy == "balanced":
        assert served == [n // 3] * 3  # nothing in flight: each tie goes to the least recent
    elif strategy == "first_available":
        assert served == [n, 0, 0]  # config order, one slot each, never busy
    else:
        assert served[0] >= n - 2, served
        view = requests.get(b.url + "/api/admin/weights",
                            headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10).json()
        assert view["models"]["m"]["p0"]["runtime_weight"] == 1000.0
        assert view["models"]["m"]["p0"]["ewma_total"] > 0


@pytest.mark.parametrize("strategy", ["dynamic_weighted", "weighted"])
def test_admin_weights_need_the_admin_token(pairs: Callable[[str], Pair], strategy: str) -> None:
    _, a, _ = pairs(strategy)
    url = a.url + "/api/admin/weights"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer wrong"},
                        timeout=10).status_code == 401
    expected = 200 if strategy == "dynamic_weighted" else 400
    assert requests.get(url, headers={"Authorization": f"Bearer {ADMIN}"},
                        timeout=10).status_code == expected


@pytest.mark.parametrize("strategy", ["balanced", "first_available"])
def test_concurrent_streams_across_instances_respect_in_flight_and_caps(
        pairs: Callable[[str], Pair], strategy: str, ups: list[StandIn]) -> None:
    _, a, b = pairs(strategy)
    for s in ups:
        s.set_behaviour(tokens=200, token_delay=0.05)
    held = 6 if strategy == "balanced" else 3
    streams = [Held(a if i % 2 else b) for i in range(held)]
    try:
        assert counts(ups) == [held // 3] * 3  # fewest in flight / one slot each
        if strategy == "first_available":
            started = time.monotonic()
            busy = chat(b)
            assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
            assert time.monotonic() - started < 3 * ACQUIRE_TIMEOUT + 2
    finally:
        for s in streams:
            s.close()
    for s in ups:
        s.set_behaviour(tokens=5, token_delay=0.0)
    deadline = time.monotonic() + 3 * LEASE_TTL
    while chat(b).status_code != 200:  # the closed streams gave their slots back
        assert time.monotonic() < deadline


def worker_pids(master: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                children.append(int(entry))
    return children


def test_sigkilled_worker_mid_stream_frees_its_slot_within_the_lease_ttl(
        pairs: Callable[[str], Pair], ups: list[StandIn]) -> None:
    _, a, b = pairs("first_available")
    ups[0].set_behaviour(tokens=400, token_delay=0.05)
    stream = Held(a, "solo")
    assert chat(b, "solo").status_code == 503  # the one slot is held by a's worker
    workers = worker_pids(a.proc.pid)
    assert workers
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    stream.close()
    ups[0].set_behaviour(tokens=5, token_delay=0.0)
    while (reply := chat(b, "solo")).status_code != 200:
        assert reply.status_code == 503
        assert time.monotonic() - killed < 3 * LEASE_TTL, "the slot did not come back"
