"""Health (SPEC §13): cool-downs double while a provider keeps failing, one half-open trial at a
time after a cool-down, only a success of a request that began after the latest failure brings a
provider back — on MemoryStore and on a real Redis (shared by two stores, as two workers)."""

from __future__ import annotations

import pytest

from llm_router_api.base.lb.balanced import LoadBalancedStrategy
from llm_router_api.base.lb.chooser import ChooserLimits, ProviderChooser
from llm_router_api.base.lb.first_available import FirstAvailableStrategy
from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.lb.state import StateStore
from llm_router_api.base.lb.strategy import ChooseProviderStrategyI
from llm_router_api.errors import NoProviderAvailable, UpstreamServerError
from llm_router_api.schemas.config import ModelConfig, ProviderConfig
from tests.lb.conftest import redis_store
from tests.support.procs import RedisServer, wait_for

BASE, CAP = 0.2, 1.0
SOLO = ModelConfig(name="m", providers=(
    ProviderConfig(id="p0", api_host="http://127.0.0.1:1", api_type="openai",
                   max_concurrency=4),))
CANDIDATES = [Candidate("p0", None)]


class FirstOfThem(ChooseProviderStrategyI):
    """A custom strategy: only ``get_provider`` (the chooser's generic path)."""

    def get_provider(self, model: str, providers: object) -> ProviderConfig:
        return list(providers)[0]  # type: ignore[call-overload]


def chooser_on(store: StateStore, strategy: type[ChooseProviderStrategyI]) -> ProviderChooser:
    return ProviderChooser(strategy(store), store=store,
                           limits=ChooserLimits(acquire_timeout=0.2, lease_ttl=30,
                                                cooldown=BASE, max_cooldown=CAP))


def test_each_failure_in_a_row_doubles_the_cool_down_up_to_the_cap(store: StateStore) -> None:
    seconds = [store.record_failure("p0", None, BASE, CAP) for _ in range(5)]
    assert seconds == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])
    assert store.cooling(["p0"]) == {"p0"}
    assert store.record_failure("p1", None, BASE, CAP, retry_after=7) == 7


def test_a_failure_older_than_the_latest_one_is_not_counted_again(store: StateStore) -> None:
    seq = store.health_marks(["p0"])["p0"][1]
    assert store.record_failure("p0", seq, BASE, CAP) == pytest.approx(BASE)
    assert store.record_failure("p0", seq, BASE, CAP) is None  # same outage, same requests
    assert store.health_marks(["p0"])["p0"] == (1.0, seq + 1)


def test_nothing_is_leased_while_cooling_then_one_trial_at_a_time(store: StateStore) -> None:
    store.record_failure("p0", None, BASE, CAP)
    assert store.choose_lease("first", "s", CANDIDATES, 30) is None
    wait_for(lambda: not store.cooling(["p0"]), 10 * BASE, "the cool-down to end")
    trial = store.choose_lease("first", "s", CANDIDATES, 30)
    assert trial is not None and trial.trial
    assert store.choose_lease("first", "s", CANDIDATES, 30) is None  # the trial runs
    assert store.acquire_lease("p0", None, 30) is None  # the generic path agrees
    store.release_lease("p0", trial[1])  # the trial ended without a verdict (client gone)
    again = store.choose_lease("first", "s", CANDIDATES, 30)
    assert again is not None and again.trial
    assert store.record_success("p0", again.seq)
    healthy = [store.choose_lease("first", "s", CANDIDATES, 30) for _ in range(3)]
    assert all(g is not None and not g.trial for g in healthy)  # full capacity again


def test_a_success_that_began_before_the_latest_failure_clears_nothing(
        store: StateStore) -> None:
    old = store.health_marks(["p0"])["p0"][1]
    store.record_failure("p0", None, BASE, CAP)
    assert not store.record_success("p0", old)
    assert store.cooling(["p0"]) == {"p0"}
    assert store.health_marks(["p0"])["p0"][0] == 1.0


@pytest.mark.parametrize("strategy", [LoadBalancedStrategy, FirstAvailableStrategy,
                                      FirstOfThem])
def test_chooser_late_success_keeps_the_fresh_cool_down(
        store: StateStore, strategy: type[ChooseProviderStrategyI]) -> None:
    chooser = chooser_on(store, strategy)
    slow = chooser.acquire(SOLO)  # a long request, started while all is well
    quick = chooser.acquire(SOLO)
    chooser.release(quick, failure=UpstreamServerError())  # fails while the slow one runs
    chooser.release(slow, latency=1.0)  # ... which then succeeds
    with pytest.raises(NoProviderAvailable, match="cooling down"):
        chooser.acquire(SOLO)


@pytest.mark.parametrize("strategy", [LoadBalancedStrategy, FirstOfThem])
def test_chooser_trial_failure_doubles_and_trial_success_resets(
        store: StateStore, strategy: type[ChooseProviderStrategyI]) -> None:
    chooser = chooser_on(store, strategy)
    chooser.release(chooser.acquire(SOLO), failure=UpstreamServerError())
    wait_for(lambda: not store.cooling(["p0"]), 10 * BASE, "the first cool-down to end")
    trial = chooser.acquire(SOLO)
    assert trial.trial
    with pytest.raises(NoProviderAvailable):  # one trial at a time: the others wait, bounded
        chooser.acquire(SOLO)
    chooser.release(trial, failure=UpstreamServerError())
    assert store.health_marks(["p0"])["p0"][0] == 2.0  # doubled: 2 failures in a row
    wait_for(lambda: not store.cooling(["p0"]), 10 * BASE, "the doubled cool-down to end")
    trial = chooser.acquire(SOLO)
    chooser.release(trial, latency=0.1)
    assert store.health_marks(["p0"])["p0"][0] == 0.0
    leases = [chooser.acquire(SOLO) for _ in range(3)]  # back at full capacity
    assert not any(lease.trial for lease in leases)
    for lease in leases:
        chooser.release(lease, latency=0.1)


def test_with_redis_one_trial_across_workers(redis_server: RedisServer) -> None:
    one, two = redis_store(redis_server, "trial:"), redis_store(redis_server, "trial:")
    try:
        one.record_failure("p0", None, BASE, CAP)
        assert two.cooling(["p0"]) == {"p0"}
        wait_for(lambda: not two.cooling(["p0"]), 10 * BASE, "the cool-down to end")
        trial = one.choose_lease("first", "s", CANDIDATES, 30)
        assert trial is not None and trial.trial
        assert two.choose_lease("first", "s", CANDIDATES, 30) is None
        assert two.record_success("p0", trial.seq)  # a verdict anywhere holds everywhere
        assert one.health_marks(["p0"])["p0"][0] == 0.0
        one.release_lease("p0", trial[1])
    finally:
        one.close()
        two.close()
