"""A routing decision with a free slot is one store call (one Redis round trip): the built-in
strategies pick, skip cooling providers and lease atomically; the chooser asks about cool-downs
only when nothing could be leased."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import redis.connection

from llm_router_api.base.lb.balanced import LoadBalancedStrategy
from llm_router_api.base.lb.cache_aware import CacheAwareStrategy
from llm_router_api.base.lb.chooser import ChooserLimits, ProviderChooser
from llm_router_api.base.lb.first_available import FirstAvailableStrategy
from llm_router_api.base.lb.hint import RoutingHint
from llm_router_api.base.lb.prefix import block_hashes
from llm_router_api.base.lb.state import MemoryStore
from llm_router_api.base.lb.weighted import WeightedStrategy
from llm_router_api.errors import NoProviderAvailable
from llm_router_api.schemas.config import ModelConfig, ProviderConfig
from tests.lb.conftest import redis_store
from tests.support.procs import RedisServer


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def choose_lease(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("choose_lease")
        return super().choose_lease(*args, **kwargs)

    def cooling(self, provider_ids: Sequence[str]) -> set[str]:
        self.calls.append("cooling")
        return super().cooling(provider_ids)


MODEL = ModelConfig(name="m", providers=(
    ProviderConfig(id="a", api_host="http://127.0.0.1:1", api_type="openai"),
    ProviderConfig(id="b", api_host="http://127.0.0.1:2", api_type="openai")))


@pytest.mark.parametrize("strategy", [LoadBalancedStrategy, WeightedStrategy,
                                      FirstAvailableStrategy])
def test_free_slot_costs_one_store_call(strategy: type[Any]) -> None:
    store = CountingStore()
    chooser = ProviderChooser(strategy(store), store=store,
                              limits=ChooserLimits(acquire_timeout=0.3))
    lease = chooser.acquire(MODEL)
    assert store.calls == ["choose_lease"]
    chooser.release(lease)


def test_all_cooling_still_fails_at_once_without_waiting() -> None:
    store = CountingStore()
    chooser = ProviderChooser(LoadBalancedStrategy(store), store=store,
                              limits=ChooserLimits(acquire_timeout=30))
    store.cool_down("a", 60)
    store.cool_down("b", 60)
    with pytest.raises(NoProviderAvailable) as caught:
        chooser.acquire(MODEL)
    assert "cooling down" in caught.value.message
    assert store.calls == ["choose_lease", "cooling"]


class CountingCachedStore(CountingStore):
    def choose_cached(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("choose_cached")
        return super().choose_cached(*args, **kwargs)


def test_cache_aware_decision_is_one_store_call() -> None:
    store = CountingCachedStore()
    chooser = ProviderChooser(CacheAwareStrategy(store), store=store,
                              limits=ChooserLimits(acquire_timeout=0.3))
    lease = chooser.acquire(MODEL, hint=RoutingHint(block_hashes("x" * 2000, 256, "m"), "s"))
    assert store.calls == ["choose_cached"]
    chooser.release(lease)


def test_cache_aware_decision_is_one_redis_command(redis_server: RedisServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring every candidate, the pick, the lease and the records: one command (EVALSHA)."""
    store = redis_store(redis_server)
    chooser = ProviderChooser(CacheAwareStrategy(store), store=store,
                              limits=ChooserLimits(acquire_timeout=0.3))
    hint = RoutingHint(block_hashes("y" * 5000, 256, "m"), "session")
    chooser.release(chooser.acquire(MODEL, hint=hint))  # loads the script once
    sent: list[str] = []
    original = redis.connection.AbstractConnection.send_command

    def counting(self: Any, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return original(self, *args, **options)

    # Every command goes on the wire through a connection's send_command (redis-py's client
    # and our LeanScript alike).
    monkeypatch.setattr(redis.connection.AbstractConnection, "send_command", counting)
    lease = chooser.acquire(MODEL, hint=hint)
    assert sent == ["EVALSHA"]
    assert lease.routing is not None and lease.routing.prefix_match == 1.0
    chooser.release(lease)
    store.close()
