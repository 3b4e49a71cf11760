"""The load poller against simulated servers, and the lock that makes it one per cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from llm_router_api.base.lb.state import MemoryStore, StateStore
from llm_router_api.core.load_poller import LOCK_NAME, LoadPoller
from llm_router_api.providers.transport import Urllib3Transport
from llm_router_api.schemas.config import ModelConfig, ModelsConfig, ProviderConfig
from standin import StandIn
from standin.sim import ServerSim, SimParams
from tests.lb.conftest import redis_store
from tests.support.procs import RedisServer


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, StandIn]]:
    made = {"v": StandIn(name="v", sim=ServerSim(SimParams(model="served-name"))),
            "o": StandIn(name="o", sim=ServerSim(SimParams(model="llama3", vram_fraction=0.5))),
            "plain": StandIn(name="plain")}
    for server in made.values():
        server.start()
    yield made
    for server in made.values():
        server.stop()


def models(servers: dict[str, StandIn]) -> ModelsConfig:
    def provider(pid: str, api_type: str, server: str, path: str | None) -> ProviderConfig:
        return ProviderConfig(id=pid, api_host=servers[server].url, api_type=api_type,
                              model_path=path)

    return ModelsConfig(models={
        "m": ModelConfig(name="m", providers=(provider("v", "vllm", "v", "served-name"),
                                              provider("plain", "openai", "plain", None))),
        "om": ModelConfig(name="om", providers=(provider("o", "ollama", "o", "llama3"),)),
        "claude": ModelConfig(name="claude", providers=(
            ProviderConfig(id="a", api_host="http://127.0.0.1:9", api_type="anthropic"),))})


def test_one_poll_stores_what_each_server_offers(servers: dict[str, StandIn]) -> None:
    store = MemoryStore()
    transport = Urllib3Transport()
    try:
        LoadPoller(store, transport, lambda: models(servers), 1.0).poll_once()
    finally:
        transport.close()
    got = store.signals(["v", "o", "plain", "a"])
    assert got["v"][0] == {"waiting": 0.0, "running": 0.0, "kv": 0.0}
    assert got["o"][0] == {"loaded": 1.0, "vram": 0.5}
    assert got["plain"][0] == {}  # no /metrics page (404): no signals, simply absent
    assert "a" not in got  # a hosted API is not polled
    assert all(age < 5 for _, age in got.values())


def test_a_failed_poll_writes_nothing(servers: dict[str, StandIn]) -> None:
    store = MemoryStore()
    store.put_signals("v", {"waiting": 3.0})
    sim = servers["v"].sim
    assert sim is not None
    sim.update(metrics_status=503)
    transport = Urllib3Transport()
    try:
        LoadPoller(store, transport, lambda: models(servers), 1.0).poll_once()
    finally:
        transport.close()
        sim.update(metrics_status=200)
    assert store.signals(["v"])["v"][0] == {"waiting": 3.0}  # the old values, aging


def test_the_redis_lock_lets_one_poller_poll(redis_server: RedisServer) -> None:
    first, second = redis_store(redis_server, "lock-test:"), redis_store(redis_server,
                                                                          "lock-test:")
    try:
        assert first.hold_lock(LOCK_NAME, "one", 0.3)
        assert not second.hold_lock(LOCK_NAME, "two", 0.3)
        assert first.hold_lock(LOCK_NAME, "one", 0.3)  # the holder keeps it
        time.sleep(1.0)  # well past the lock's 0.3 s: the holder is gone
        assert second.hold_lock(LOCK_NAME, "two", 0.3)
        assert not first.hold_lock(LOCK_NAME, "one", 0.3)
    finally:
        first.close()
        second.close()


def test_without_redis_every_process_polls_for_itself() -> None:
    store: StateStore = MemoryStore()
    assert store.hold_lock(LOCK_NAME, "one", 1) and store.hold_lock(LOCK_NAME, "two", 1)
