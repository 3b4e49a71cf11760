"""Each strategy against its definition (SPEC §5, §9), on MemoryStore and on a real Redis."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence

import pytest

from llm_router_api.base.lb.balanced import LoadBalancedStrategy
from llm_router_api.base.lb.cache_aware import CacheAwareStrategy
from llm_router_api.base.lb.first_available import FirstAvailableStrategy
from llm_router_api.base.lb.registry import STRATEGIES, strategy_class
from llm_router_api.base.lb.state import MemoryStore, StateStore
from llm_router_api.base.lb.strategy import ChooseProviderStrategyI
from llm_router_api.base.lb.weighted import DynamicWeightedStrategy, WeightedStrategy
from llm_router_api.schemas.config import ProviderConfig

TTL = 30.0


def providers(*weights: float, cap: int | None = None) -> list[ProviderConfig]:
    return [ProviderConfig(id=f"p{i}", api_host="http://127.0.0.1:1", api_type="openai",
                           weight=w, max_concurrency=cap)
            for i, w in enumerate(weights)]


def run(strategy: ChooseProviderStrategyI, provs: Sequence[ProviderConfig], n: int,
        model: str = "m") -> list[str]:
    """``n`` sequential requests, each released before the next."""
    order = []
    for _ in range(n):
        acquired = strategy.acquire(model, provs, TTL)
        assert acquired is not None
        provider, lease = acquired
        strategy.store.release_lease(provider.id, lease)
        order.append(provider.id)
    return order


def test_registry_has_every_strategy_under_its_seed_path() -> None:
    expected = {"balanced": LoadBalancedStrategy, "weighted": WeightedStrategy,
                "dynamic_weighted": DynamicWeightedStrategy,
                "first_available": FirstAvailableStrategy, "cache_aware": CacheAwareStrategy}
    assert expected == STRATEGIES
    assert strategy_class("llm_router_api.base.lb.weighted:WeightedStrategy") is WeightedStrategy


@pytest.mark.parametrize("weights", [(1, 1, 1), (5, 1, 1), (3, 2), (0.3, 1.7, 2.5, 0.01),
                                     (7, 11, 13, 1, 2)])
def test_weighted_every_prefix_is_within_one_of_its_share(store: StateStore,
                                                          weights: tuple[float, ...]) -> None:
    provs = providers(*weights)
    order = run(WeightedStrategy(store), provs, 80)
    total = sum(weights)
    counts: Counter[str] = Counter()
    for n, pid in enumerate(order, start=1):
        counts[pid] += 1
        for p in provs:
            assert abs(counts[p.id] - n * p.weight / total) <= 1, (n, p.id, counts)


def test_weighted_is_deterministic_and_equal_on_every_store(store: StateStore) -> None:
    provs = providers(0.3, 1.7, 2.5)
    assert run(WeightedStrategy(store), provs, 40) == run(WeightedStrategy(MemoryStore()),
                                                          provs, 40)


def test_weighted_provider_back_from_cool_down_gets_no_burst(store: StateStore) -> None:
    provs = providers(1, 1)
    strategy = WeightedStrategy(store)
    run(strategy, provs, 4)
    store.cool_down("p1", 30)
    assert set(run(strategy, provs, 6)) == {"p0"}
    store.clear_cool_down("p1")
    order = run(strategy, provs, 6)
    assert max(Counter(order).values()) <= 4  # no run of six on the returning provider


def test_balanced_takes_fewest_in_flight_then_least_recently_chosen(store: StateStore) -> None:
    provs = providers(1, 1, 1)
    strategy = LoadBalancedStrategy(store)
    assert run(strategy, provs, 6) == ["p0", "p1", "p2", "p0", "p1", "p2"]
    held = [strategy.acquire("m", provs, TTL) for _ in range(5)]
    assert Counter(a[0].id for a in held if a) == {"p0": 2, "p1": 2, "p2": 1}
    assert store.in_flight(["p0", "p1", "p2"]) == {"p0": 2, "p1": 2, "p2": 1}
    assert run(strategy, provs, 1) == ["p2"]


def test_first_available_fills_in_config_order_with_one_slot_each(store: StateStore) -> None:
    provs = providers(1, 1)
    strategy = FirstAvailableStrategy(store)
    assert run(strategy, provs, 3) == ["p0", "p0", "p0"]
    first = strategy.acquire("m", provs, TTL)
    second = strategy.acquire("m", provs, TTL)
    assert first is not None and second is not None
    assert (first[0].id, second[0].id) == ("p0", "p1")
    assert strategy.acquire("m", provs, TTL) is None
    store.release_lease("p0", first[1])
    store.release_lease("p0", first[1])  # idempotent
    again = strategy.acquire("m", provs, TTL)
    assert again is not None and again[0].id == "p0"


@pytest.mark.parametrize("cls", list(STRATEGIES.values()))
def test_max_concurrency_is_a_hard_cap_under_concurrent_acquires(store: StateStore,
                                                                   cls: type) -> None:
    provs = providers(1, 2, cap=2)
    strategy = cls(store)
    granted: list[str] = []
    lock = threading.Lock()

    def grab() -> None:
        acquired = strategy.acquire("m", provs, TTL)
        if acquired is not None:
            with lock:
                granted.append(acquired[0].id)

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(granted) == {"p0": 2, "p1": 2}


def test_cooling_providers_are_never_picked_while_a_healthy_one_exists(store: StateStore) -> None:
    provs = providers(1, 1, 1)
    store.cool_down("p0", 30)
    for cls in STRATEGIES.values():
        assert "p0" not in run(cls(store), provs, 6, model=cls.name)


def test_dynamic_weighted_scales_weights_by_latency(store: StateStore) -> None:
    provs = providers(1, 1)
    strategy = DynamicWeightedStrategy(store)
    for _ in range(20):
        strategy.observe_latency("m", provs[0], 0.1, stream=True)
        strategy.observe_latency("m", provs[1], 0.3, stream=True)
    weights = strategy.weights("m", provs)
    assert weights == pytest.approx([1 * 0.2 / 0.1, 1 * 0.2 / 0.3])
    assert Counter(run(strategy, provs, 40)) == {"p0": 30, "p1": 10}


def test_dynamic_weighted_ewma_uses_alpha_and_keeps_kinds_apart(store: StateStore) -> None:
    provs = providers(1, 1)
    strategy = DynamicWeightedStrategy(store)
    strategy.observe_latency("m", provs[0], 1.0, stream=True)
    strategy.observe_latency("m", provs[0], 2.0, stream=True)
    strategy.observe_latency("m", provs[0], 10.0, stream=False)
    view = strategy.runtime_weights("m", provs)
    assert view["p0"]["ewma_ttft"] == pytest.approx(0.2 * 2.0 + 0.8 * 1.0)
    assert view["p0"]["ewma_total"] == pytest.approx(10.0)
    assert view["p1"]["ewma_ttft"] is None


def test_dynamic_weighted_runtime_weights_live_in_the_store_until_reset(store: StateStore) -> None:
    provs = providers(1, 1)
    DynamicWeightedStrategy(store).set_runtime_weights("m", {"p0": 3.0})
    other_worker = DynamicWeightedStrategy(store)
    view = other_worker.runtime_weights("m", provs)
    assert view["p0"]["runtime_weight"] == 3.0 and view["p0"]["effective_weight"] == 3.0
    assert Counter(run(other_worker, provs, 40)) == {"p0": 30, "p1": 10}
    other_worker.reset_runtime_weights("m")
    assert other_worker.runtime_weights("m", provs)["p0"]["runtime_weight"] is None


def test_other_strategies_refuse_runtime_weights(store: StateStore) -> None:
    with pytest.raises(NotImplementedError):
        WeightedStrategy(store).set_runtime_weights("m", {"p0": 2.0})


def test_a_custom_strategy_needs_only_get_provider(store: StateStore) -> None:
    class Last(ChooseProviderStrategyI):
        def get_provider(self, model: str,
                         provs: Sequence[ProviderConfig]) -> ProviderConfig | None:
            return provs[-1]

    provs = providers(1, 1, cap=1)
    strategy = Last(store)
    first = strategy.acquire("m", provs, TTL)
    second = strategy.acquire("m", provs, TTL)
    assert first is not None and second is not None
    assert (first[0].id, second[0].id) == ("p1", "p0")  # p1 full: the cap sends it on
    assert strategy.acquire("m", provs, TTL) is None


def test_leases_expire_by_ttl_unless_renewed(store: StateStore) -> None:
    ttl = 0.3
    held = store.acquire_lease("p0", 1, ttl)
    kept = store.acquire_lease("p1", 1, ttl)
    assert held is not None and kept is not None
    assert store.acquire_lease("p0", 1, ttl) is None
    deadline = time.monotonic() + 3 * ttl
    while time.monotonic() < deadline:
        store.renew_leases({kept: "p1"}, ttl)
        time.sleep(ttl / 3)
    assert store.in_flight(["p0", "p1"]) == {"p0": 0, "p1": 1}
    assert store.acquire_lease("p0", 1, ttl) is not None
    assert store.acquire_lease("p1", 1, ttl) is None
    store.release_lease("p1", kept)
    assert store.in_flight(["p1"]) == {"p1": 0}


def test_renewal_restores_a_lost_lease(store: StateStore) -> None:
    """A renewal says "this lease is in use": a store that lost it takes it back (the chooser
    never renews a released lease, see tests/lb/test_release.py)."""
    lease = store.acquire_lease("p0", 2, 30)
    assert lease is not None
    store.release_lease("p0", lease)  # stands for a lease the store lost
    store.renew_leases({lease: "p0"}, 30)
    assert store.in_flight(["p0"]) == {"p0": 1}


def test_cool_down_ends_by_itself(store: StateStore) -> None:
    store.cool_down("p0", 0.2)
    assert store.cooling(["p0", "p1"]) == {"p0"}
    time.sleep(0.4)
    assert store.cooling(["p0", "p1"]) == set()
