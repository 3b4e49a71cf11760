"""Drain (SPEC §14): a drained provider gets no new request under any strategy, built-in or
custom, on MemoryStore and on a real Redis; leases already held finish; undrain restores it;
two choosers sharing one Redis (two instances) see each other's drains."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from llm_router_api.base.lb.chooser import DRAIN_REFRESH, DRAINED_KEY, ProviderChooser
from llm_router_api.base.lb.registry import STRATEGIES, strategy_class
from llm_router_api.base.lb.state import MemoryStore, StateStore
from llm_router_api.errors import NoProviderAvailable
from llm_router_api.schemas.config import ModelConfig, ProviderConfig
from tests.lb.conftest import redis_store
from tests.support.procs import RedisServer

CUSTOM = "tests.api.order_strategy:ConfigOrder"
EVERY_STRATEGY = [*STRATEGIES, CUSTOM]


def model(n: int = 3, cap: int | None = None) -> ModelConfig:
    return ModelConfig(name="m", providers=[
        ProviderConfig(id=f"p{i}", api_host="http://127.0.0.1:1", api_type="openai",
                       max_concurrency=cap) for i in range(n)])


def chooser(strategy: str, store: StateStore) -> ProviderChooser:
    return ProviderChooser(strategy_class(strategy)(store), store=store)


def served(choose: ProviderChooser, m: ModelConfig, n: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(n):
        lease = choose.acquire(m, deadline=0.0)
        counts[lease.provider.id] += 1
        choose.release(lease)
    return counts


@pytest.mark.parametrize("strategy", EVERY_STRATEGY)
def test_a_drained_provider_gets_nothing_new_and_its_lease_finishes(
        store: StateStore, strategy: str) -> None:
    m = model(cap=4)
    choose = chooser(strategy, store)
    held = choose.acquire(m, deadline=0.0)
    assert held.provider.id == "p0"  # every strategy's first pick from a fresh state
    choose.drain("p0")
    assert set(choose.drained()) == {"p0"}
    counts = served(choose, m, 12)
    assert counts["p0"] == 0 and sum(counts.values()) == 12
    assert store.in_flight(["p0"])["p0"] == 1  # the request already on it goes on
    choose.release(held)
    assert store.in_flight(["p0"])["p0"] == 0
    choose.undrain("p0")
    assert choose.drained() == {}
    assert served(choose, m, 12)["p0"] > 0


@pytest.mark.parametrize("strategy", EVERY_STRATEGY)
def test_every_provider_drained_is_503_at_once(store: StateStore, strategy: str) -> None:
    m = model(2)
    choose = chooser(strategy, store)
    choose.drain("p0")
    choose.drain("p1")
    with pytest.raises(NoProviderAvailable, match="drained"):
        choose.acquire(m)  # no wait for the acquire timeout: a drain is not a busy slot


@pytest.mark.parametrize("strategy", EVERY_STRATEGY)
def test_a_drain_on_one_instance_holds_on_another_sharing_redis(
        redis_server: RedisServer, strategy: str) -> None:
    prefix = f"drain-{strategy.replace(':', '-')}:"
    a_store, b_store = redis_store(redis_server, prefix), redis_store(redis_server, prefix)
    try:
        a, b = chooser(strategy, a_store), chooser(strategy, b_store)
        m = model()
        a.drain("p1")
        assert served(b, m, 9)["p1"] == 0
        b.undrain("p1")
        assert a.drained() == {}
        assert served(a, m, 9)["p1"] > 0 or strategy in ("first_available", CUSTOM)
    finally:
        a_store.close()
        b_store.close()


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.drain_reads = 0

    def get_hash(self, key: str) -> Any:
        self.drain_reads += key == DRAINED_KEY
        return super().get_hash(key)


def test_the_drain_check_is_not_a_store_call_per_request() -> None:
    store = CountingStore()
    choose = chooser("balanced", store)
    started = time.monotonic()
    served(choose, model(), 50)
    periods = (time.monotonic() - started) / DRAIN_REFRESH
    assert 1 <= store.drain_reads <= 1 + periods + 1


def test_another_worker_honours_a_drain_within_the_refresh_period() -> None:
    store = MemoryStore()
    a, b = chooser("balanced", store), chooser("balanced", store)
    m = model()
    served(b, m, 3)  # b has read the (empty) drained set
    a.drain("p0")
    time.sleep(3 * DRAIN_REFRESH)  # the documented bound, with a 3x margin
    assert served(b, m, 9)["p0"] == 0


class SlowDrainReads(CountingStore):
    """The drained set is read, then its answer waits for ``go``: a Redis read on its way."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.reading = threading.Event()
        self.entered = 0

    def get_hash(self, key: str) -> Any:
        answer = super().get_hash(key)
        if key == DRAINED_KEY:
            self.entered += 1
            self.reading.set()
            assert self.go.wait(10)
        return answer


def test_one_caller_reads_the_drained_set_while_the_others_keep_the_last() -> None:
    store = SlowDrainReads()
    choose = chooser("balanced", store)
    first = threading.Thread(target=choose._drained_now, daemon=True)
    first.start()
    assert store.reading.wait(10)  # the refresh is on its way...
    others = [choose._drained_now() for _ in range(20)]  # ...the others do not wait for it
    assert others == [frozenset()] * 20 and store.entered == 1
    store.go.set()
    first.join(10)
    assert store.entered == 1


def test_a_drain_is_not_undone_by_a_read_that_began_before_it() -> None:
    store = SlowDrainReads()
    choose = chooser("balanced", store)
    stale = threading.Thread(target=choose._drained_now, daemon=True)
    stale.start()
    assert store.reading.wait(10)  # a read (of an empty set) on its way when...
    choose.drain("p1")  # ...this worker drains p1
    store.go.set()  # the old answer arrives after the drain
    stale.join(10)
    assert "p1" in choose._drained_now()
