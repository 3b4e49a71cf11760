"""Waiting for a slot is fair and woken, in memory and in a real Redis (``base.lb.waiting``).

Every test runs on both stores. Whether a waiter was woken is what ``wait_turn`` answers (True:
a wake, False: the time ran out), so nothing here depends on timing; the only waits are bounds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from llm_router_api.base.lb import redis_store, waiting
from llm_router_api.base.lb.chooser import ChooserLimits, ProviderChooser
from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.lb.registry import build_strategy
from llm_router_api.base.lb.state import StateStore
from llm_router_api.base.lb.waiting import Waiter
from llm_router_api.errors import NoProviderAvailable
from llm_router_api.schemas.config import ModelConfig
from tests.lb.conftest import redis_store as redis_store_for
from tests.support.procs import RedisServer, wait_for

ONE = [Candidate("p0", 1)]
WOKEN_WITHIN = 10.0  # a wake is immediate; this only bounds a broken test
NOT_WOKEN = 0.2


def choose(store: StateStore, waiter: Waiter | None,
           candidates: list[Candidate] = ONE) -> str | None:
    chosen = store.choose_lease("first", "s", candidates, 30, waiter)
    return None if chosen is None else chosen[1]


@pytest.fixture
def queue(store: StateStore) -> Iterator[tuple[StateStore, str]]:
    """The store, and a lease holding the only slot of ``p0``."""
    held = choose(store, Waiter("m"))
    assert held is not None
    yield store, held


def test_waiters_are_served_in_arrival_order(queue: tuple[StateStore, str]) -> None:
    store, held = queue
    a, b, c = Waiter("m"), Waiter("m"), Waiter("m")
    assert [choose(store, w) for w in (a, b, c)] == [None, None, None]  # all three queue
    store.release_lease("p0", held, queue="m")
    assert store.wait_turn(a, WOKEN_WITHIN) is True  # the release wakes the head...
    assert store.wait_turn(b, NOT_WOKEN) is False  # ...and only the head
    assert choose(store, b) is None  # b may not overtake a
    assert choose(store, Waiter("m")) is None  # nor may a newcomer
    served_a = choose(store, a)
    assert served_a is not None
    store.release_lease("p0", served_a, queue="m")
    assert store.wait_turn(b, WOKEN_WITHIN) is True
    served_b = choose(store, b)
    assert served_b is not None and choose(store, c) is None
    store.release_lease("p0", served_b, queue="m")
    assert choose(store, c) is not None


def test_a_waiter_that_leaves_passes_its_wake_on(queue: tuple[StateStore, str]) -> None:
    store, held = queue
    a, b = Waiter("m"), Waiter("m")
    assert choose(store, a) is None and choose(store, b) is None
    store.release_lease("p0", held, queue="m")  # wakes a, which gives up (timed out, say)
    store.leave_queue(a)
    assert store.wait_turn(b, WOKEN_WITHIN) is True
    assert choose(store, b) is not None


def test_a_crashed_waiter_blocks_nobody_past_its_ticket(queue: tuple[StateStore, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ttl = 0.3
    monkeypatch.setattr(waiting, "TICKET_TTL", ttl)
    monkeypatch.setattr(redis_store, "TICKET_TTL_MS", int(ttl * 1000))
    store, held = queue
    dead, alive = Waiter("m"), Waiter("m")
    assert choose(store, dead) is None and choose(store, alive) is None
    store.release_lease("p0", held, queue="m")  # wakes `dead`, which never asks again
    wait_for(lambda: choose(store, alive) is not None, 10 * ttl, "the live waiter's turn")


def test_free_slots_wake_as_many_waiters(store: StateStore) -> None:
    two = [Candidate("p0", 2)]
    held = [choose(store, Waiter("m"), two) for _ in range(2)]
    a, b, c = Waiter("m"), Waiter("m"), Waiter("m")
    assert [choose(store, w, two) for w in (a, b, c)] == [None, None, None]
    for lease in held:
        assert lease is not None
        store.release_lease("p0", lease, queue="m")
    # Two releases before the head acts: the head takes one and passes the baton to the next.
    assert store.wait_turn(a, WOKEN_WITHIN) is True
    assert choose(store, a, two) is not None
    assert store.wait_turn(b, WOKEN_WITHIN) is True
    assert choose(store, b, two) is not None
    assert store.wait_turn(c, NOT_WOKEN) is False and choose(store, c, two) is None


def test_uncapped_providers_never_queue(store: StateStore) -> None:
    free = [Candidate("p0", None)]
    assert all(choose(store, Waiter("m"), free) is not None for _ in range(20))


MODEL = ModelConfig.model_validate({"name": "m", "providers": [
    {"id": f"p{i}", "api_host": f"http://127.0.0.1:{9 + i}", "api_type": "openai",
     "max_concurrency": 2} for i in range(2)]})


def test_callers_are_served_in_arrival_order_through_the_chooser(store: StateStore) -> None:
    """Four slots held; eight callers arrive one after another and wait; each release lets in
    exactly the next in arrival order. No 503 within the acquire timeout."""
    chooser = ProviderChooser(build_strategy("balanced", store), store=store,
                              limits=ChooserLimits(acquire_timeout=60, lease_ttl=30))
    held = [chooser.acquire(MODEL) for _ in range(4)]
    served: list[int] = []
    errors: list[Exception] = []

    def caller(index: int) -> None:
        try:
            lease = chooser.acquire(MODEL)
            served.append(index)
            held.append(lease)
        except NoProviderAvailable as exc:
            errors.append(exc)

    threads = []
    for index in range(8):
        threads.append(threading.Thread(target=caller, args=(index,), daemon=True))
        threads[-1].start()
        wait_for(lambda n=index + 1: queued(store) >= n, 10, "the caller to queue")
    for count in range(1, 9):
        chooser.release(held.pop(0))
        wait_for(lambda c=count: len(served) >= c, 10, "the next caller to be served")
        time.sleep(0.05)  # were the order broken, a second caller would get in now
        assert served == list(range(count))
    for thread in threads:
        thread.join(10)
    assert not errors


def queued(store: StateStore) -> int:
    """Tickets waiting in the queue of model ``m`` (read from the store itself)."""
    if isinstance(store, redis_store.RedisStore):
        if not store.degraded:
            return int(store._redis.zcard(store._queue_keys("m")[0]))
        store = store._memory  # Redis is away: the process's own queue
    return len(store._queues._tickets.get("m", {}))  # type: ignore[attr-defined]


def test_a_timed_out_waiter_leaves_the_queue(store: StateStore) -> None:
    chooser = ProviderChooser(build_strategy("balanced", store), store=store,
                              limits=ChooserLimits(acquire_timeout=0.3, lease_ttl=30))
    held = [chooser.acquire(MODEL) for _ in range(4)]
    with pytest.raises(NoProviderAvailable):
        chooser.acquire(MODEL)
    assert queued(store) == 0
    for lease in held:
        chooser.release(lease)


def test_while_redis_is_away_waiting_is_fair_in_each_process() -> None:
    """Redis stopped: the store serves from memory, and the queue there is just as fair."""
    server = RedisServer()
    store = redis_store_for(server)
    try:
        server.stop()
        test_callers_are_served_in_arrival_order_through_the_chooser(store)
        assert store.degraded
    finally:
        store.close()
