"""One lease store per worker (``base.leases``, ``base.redis_leases``): provider slots and
API-key concurrency slots are held, released and renewed in one place, on a real Redis.

Release calls are observed with a counting wrapper around the store's real ``RELEASE`` script
(every call still goes to Redis) and with Redis' own ``INFO commandstats``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis

from llm_router_api.auth.guard import Guard
from llm_router_api.auth.keys import ApiKey
from llm_router_api.auth.limits import Admission
from llm_router_api.auth.redis_limits import RedisLimiter
from llm_router_api.base.lb.chooser import ChooserLimits, ProviderChooser
from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.lb.redis_store import RedisStore
from llm_router_api.base.lb.registry import build_strategy
from llm_router_api.base.lb.waiting import Waiter
from llm_router_api.base.leases import KEY, PROVIDER, Held
from llm_router_api.base.redis_leases import RedisLeases
from llm_router_api.core.assemble import assemble
from llm_router_api.errors import NoProviderAvailable, RateLimited
from llm_router_api.schemas.config import ModelConfig
from llm_router_api.settings import load_settings
from tests.lb.conftest import redis_store
from tests.support.procs import RedisServer, wait_for, write_config

BOUND = 10.0  # only bounds a broken test
MODEL = ModelConfig.model_validate({"name": "m", "providers": [
    {"id": "p0", "api_host": "http://127.0.0.1:9", "api_type": "openai",
     "max_concurrency": 1}]})
KEY_ONE = ApiKey(id="k", key="lease-store-key", max_concurrent=1)


class Worker:
    """One worker's parts on one lease store: a chooser and a guard, as ``assemble`` wires
    them, with the raw Redis client the test reads the sets through."""

    def __init__(self, server: RedisServer) -> None:
        self.store = redis_store(server)
        self.leases: RedisLeases = self.store.leases
        prefix = self.leases.prefix
        self.chooser = ProviderChooser(build_strategy("balanced", self.store), store=self.store,
                                       limits=ChooserLimits(acquire_timeout=0.2, lease_ttl=30))
        self.guard = Guard(RedisLimiter(redis.Redis(port=server.port), prefix, 30,
                                        leases=self.leases))
        self.raw = redis.Redis(port=server.port, decode_responses=True)
        self.provider_set = f"{prefix}lease:p0"
        self.key_set = f"{prefix}auth:k:leases"

    def held_in_redis(self) -> tuple[int, int]:
        return int(self.raw.zcard(self.provider_set)), int(self.raw.zcard(self.key_set))

    def close(self) -> None:
        self.guard.close()
        self.store.close()


@pytest.fixture
def worker(redis_server: RedisServer) -> Iterator[Worker]:
    made = Worker(redis_server)
    yield made
    made.close()


class CountingRelease:
    """Wraps the store's real RELEASE script: records the lease ids of each call; with
    ``gate``, the first call waits for it before going to Redis (a send in flight)."""

    def __init__(self, leases: RedisLeases, gate: threading.Event | None = None,
                 second_gate: threading.Event | None = None) -> None:
        self.real = leases._release
        self.calls: list[list[str]] = []
        self.gates = [gate, second_gate]
        self.entered = [threading.Event(), threading.Event()]
        leases._release = self  # type: ignore[assignment]

    def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        self.calls.append([str(a) for a in args[2::4]])
        turn = len(self.calls) - 1
        if turn < 2 and (gate := self.gates[turn]) is not None:
            self.entered[turn].set()
            assert gate.wait(BOUND)
        return self.real(keys=keys, args=args)


def evalsha_calls(raw: redis.Redis) -> int:
    return int(raw.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_one_renewal_restores_both_kinds_after_flushall(worker: Worker) -> None:
    lease = worker.chooser.acquire(MODEL)
    admission = worker.guard.admit(KEY_ONE)
    assert admission is not None and worker.held_in_redis() == (1, 1)
    assert worker.leases.count() == 2 and worker.leases.count(PROVIDER) == 1
    worker.leases.renew(30)  # loads the script (FLUSHALL keeps scripts)
    worker.raw.flushall()
    assert worker.held_in_redis() == (0, 0)
    before = evalsha_calls(worker.raw)
    worker.leases.renew(30)  # what the maintenance thread calls: once for every lease
    assert evalsha_calls(worker.raw) - before == 1
    assert worker.held_in_redis() == (1, 1)
    with pytest.raises(NoProviderAvailable):
        worker.chooser.acquire(MODEL)  # both caps hold again
    with pytest.raises(RateLimited):
        worker.guard.admit(KEY_ONE)
    worker.chooser.release(lease)
    worker.guard.release(admission)
    worker.leases.renew(30)  # released leases are not renewed back
    assert worker.held_in_redis() == (0, 0) and worker.leases.count() == 0


def test_each_kind_is_released_once_through_one_path(worker: Worker) -> None:
    counting = CountingRelease(worker.leases)
    lease = worker.chooser.acquire(MODEL)
    admission = worker.guard.admit(KEY_ONE)
    assert admission is not None and admission.lease_id is not None
    for _ in range(2):  # a second release of either is a no-op
        worker.chooser.release(lease)
        worker.guard.release(admission)
    assert sorted(sum(counting.calls, [])) == sorted([lease.id, admission.lease_id])
    assert worker.held_in_redis() == (0, 0)


def test_releases_racing_a_renewal_are_not_brought_back(worker: Worker) -> None:
    counting = CountingRelease(worker.leases)
    lease = worker.chooser.acquire(MODEL)
    admission = worker.guard.admit(KEY_ONE)
    assert admission is not None and admission.lease_id is not None
    renew = worker.leases.renew_now

    def renew_while_released(leases: Mapping[str, Held], ttl: float) -> None:
        worker.chooser.release(lease)  # both requests end while the renewal is on its way
        worker.guard.release(admission)
        assert worker.held_in_redis() == (0, 0)
        renew(leases, ttl)  # re-creates them: the renewal was sent before the releases
        assert worker.held_in_redis() == (1, 1)

    worker.leases.renew_now = renew_while_released  # type: ignore[method-assign]
    worker.leases.renew(30)
    assert worker.held_in_redis() == (0, 0)
    released = sum(counting.calls, [])  # each release, then each once more after the renewal
    assert sorted(released) == sorted([lease.id, admission.lease_id] * 2)
    worker.chooser.release(lease)
    worker.guard.release(admission)
    assert len(sum(counting.calls, [])) == 4  # and never again


def test_releases_arriving_while_one_is_in_flight_go_in_one_call(worker: Worker) -> None:
    store = worker.store
    many = [Candidate("p0", 10)]
    grants = [store.choose_lease("first", "s", many, 30) for _ in range(6)]
    leases = [str(g[1]) for g in grants if g is not None]
    assert len(leases) == 6 and worker.held_in_redis() == (6, 0)
    waiter = Waiter("m")
    assert store.choose_lease("first", "s", [Candidate("p0", 6)], 30, waiter) is None  # queued
    store.release_lease("p0", "no-such-lease")  # loads the script
    gate = threading.Event()
    counting = CountingRelease(worker.leases, gate)
    before = evalsha_calls(worker.raw)
    first = threading.Thread(target=store.release_lease, args=("p0", leases[0], "m"),
                             daemon=True)
    first.start()
    assert counting.entered[0].wait(BOUND)  # the first release is on its way
    for lease_id in leases[1:]:
        store.release_lease("p0", lease_id, queue="m")  # queued: returns at once
    assert len(counting.calls) == 1 and worker.held_in_redis() == (6, 0)
    gate.set()
    first.join(BOUND)
    wait_for(lambda: worker.held_in_redis() == (0, 0), BOUND, "the queued releases")
    assert counting.calls == [[leases[0]], leases[1:]]  # one call for the five
    assert evalsha_calls(worker.raw) - before == 2
    assert store.wait_turn(waiter, BOUND) is True  # the release woke the queue's head


def test_a_caller_makes_one_call_however_many_releases_queue_behind_it(
        worker: Worker) -> None:
    """Under steady load the queue never empties: the request whose release found none on its
    way sends its own call and returns; a background sender sends what queued meanwhile."""
    store = worker.store
    grants = [store.choose_lease("first", "s", [Candidate("p0", 10)], 30) for _ in range(3)]
    leases = [str(g[1]) for g in grants if g is not None]
    store.release_lease("p0", "no-such-lease")  # loads the script
    gate, second_gate = threading.Event(), threading.Event()
    counting = CountingRelease(worker.leases, gate, second_gate)
    first = threading.Thread(target=store.release_lease, args=("p0", leases[0]), daemon=True)
    first.start()
    assert counting.entered[0].wait(BOUND)
    store.release_lease("p0", leases[1])  # queued behind the first
    gate.set()
    assert counting.entered[1].wait(BOUND)  # the queued one is on its way...
    first.join(BOUND)
    assert not first.is_alive()  # ...and the first caller has returned all the same
    store.release_lease("p0", leases[2])  # queued behind the second, sent by the sender
    second_gate.set()
    wait_for(lambda: worker.held_in_redis() == (0, 0), BOUND, "every release")
    assert counting.calls == [[leases[0]], [leases[1]], [leases[2]]]


def test_a_release_is_sent_at_once_when_none_is_in_flight(worker: Worker) -> None:
    counting = CountingRelease(worker.leases)
    lease = worker.chooser.acquire(MODEL)
    worker.chooser.release(lease)
    assert counting.calls == [[lease.id]] and worker.held_in_redis() == (0, 0)


class Killed(BaseException):
    """Stands for a greenlet killed while it was sending (gevent's ``GreenletExit``)."""


def test_releases_of_a_killed_sender_are_sent_at_exit(
        redis_server: RedisServer) -> None:
    worker = Worker(redis_server)
    real = worker.leases._release
    calls: list[int] = []

    def killed_once(keys: list[Any], args: list[Any]) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise Killed
        return real(keys=keys, args=args)

    worker.leases._release = killed_once  # type: ignore[assignment]
    lease = worker.chooser.acquire(MODEL)
    with pytest.raises(Killed):
        worker.chooser.release(lease)
    assert worker.held_in_redis() == (1, 0)
    worker.close()  # the worker exits: what is still queued is sent first
    assert worker.held_in_redis() == (0, 0)


def test_a_release_during_an_outage_is_delivered_with_a_tombstone(
        redis_server: RedisServer) -> None:
    worker = Worker(redis_server)
    try:
        lease = worker.chooser.acquire(MODEL)
        admission = worker.guard.admit(KEY_ONE)
        assert admission is not None and admission.lease_id is not None
        real = worker.leases._release
        down = [True]

        def refused(keys: list[Any], args: list[Any]) -> Any:
            if down[0]:
                raise redis.ConnectionError("refused")
            return real(keys=keys, args=args)

        worker.leases._release = refused  # type: ignore[assignment]
        worker.chooser.release(lease)
        worker.guard.release(admission)
        assert worker.leases.pending() >= 1 and worker.held_in_redis() == (1, 1)
        down[0] = False
        wait_for(lambda: worker.held_in_redis() == (0, 0) and worker.leases.pending() == 0,
                 BOUND, "the late releases to be delivered")
        for lease_id in (lease.id, admission.lease_id):  # a late grant cannot bring them back
            assert worker.raw.exists(f"{worker.leases.prefix}gone:{lease_id}")
    finally:
        worker.close()


def test_assemble_gives_the_guard_the_chooser_s_lease_store(redis_server: RedisServer,
                                                           tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"id": "k", "key": "lease-store-key",
                                          "max_concurrent": 1}]}))
    write_config(tmp_path, {"m": [{"id": "p0", "api_host": "http://127.0.0.1:9",
                                   "api_type": "openai"}]})
    settings = load_settings({"LLM_ROUTER_MODELS_CONFIG": str(tmp_path / "models-config.json"),
                              "LLM_ROUTER_MINIMUM": "1", "LLM_ROUTER_API_KEYS_FILE": str(keys),
                              "LLM_ROUTER_REDIS_HOST": "127.0.0.1",
                              "LLM_ROUTER_REDIS_PORT": str(redis_server.port)})
    parts = assemble(settings)
    try:
        assert isinstance(parts.chooser.store, RedisStore)
        assert parts.guard.leases is parts.chooser.store.leases
        assert isinstance(parts.guard.limiter, RedisLimiter)
        admission = parts.guard.admit(parts.config.current.keys.authenticate(
            {"Authorization": "Bearer lease-store-key"}))
        assert isinstance(admission, Admission) and admission.lease_id is not None
        lease = parts.chooser.acquire(parts.models.models["m"])
        leases = parts.chooser.store.leases
        assert leases.count(KEY) == 1 and leases.count(PROVIDER) == 1
        raw = redis.Redis(port=redis_server.port)
        raw.flushall()
        parts.maintenance._renew()  # the worker's renewal round: both kinds come back
        assert raw.zcard("llm_router:lease:p0") == 1 and raw.zcard("llm_router:auth:k:leases") == 1
        parts.guard.release(admission)
        parts.chooser.release(lease)
        assert leases.count() == 0
        assert raw.zcard("llm_router:lease:p0") == 0 and raw.zcard("llm_router:auth:k:leases") == 0
    finally:
        parts.close()


GEVENT_BURST = """
import sys
from gevent import monkey
monkey.patch_all()
import gevent, redis
from llm_router_api.base.leases import PROVIDER, Held
from llm_router_api.base.redis_leases import RedisLeases

port, count = int(sys.argv[1]), int(sys.argv[2])
leases = RedisLeases(redis.Redis(port=port), "gevent:")
raw = redis.Redis(port=port)
raw.zadd("gevent:lease:p0", {f"l{i}": 2 ** 50 for i in range(count)})
leases.release("warm", Held(PROVIDER, "p0"))  # loads the script
real, events = leases._release, []
def counting(keys, args):
    events.append(f"send {len(args[2::4])}")
    if len(events) == 1:
        gevent.sleep(0)  # the reply is not there yet: the sender's greenlet waits in the hub
    return real(keys=keys, args=args)
leases._release = counting
def finish(i):
    leases.release(f"l{i}", Held(PROVIDER, "p0"))
    events.append("returned")
gevent.joinall([gevent.spawn(finish, i) for i in range(count)], timeout=10)
leases.close()
print(raw.zcard("gevent:lease:p0"), "|".join(events))
"""


def test_under_gevent_releases_queue_while_the_sender_waits_in_the_hub(
        redis_server: RedisServer) -> None:
    """Greenlets: while the sender's call waits in the hub, the other greenlets' releases
    queue and return at once (nothing holds them), and go in one call after it."""
    count = 50
    done = subprocess.run([sys.executable, "-c", GEVENT_BURST, str(redis_server.port),
                           str(count)], capture_output=True, text=True, timeout=60,
                          check=True)
    left, events = done.stdout.strip().split(" ", 1)
    assert left == "0"
    assert events.split("|") == (["send 1"] + ["returned"] * (count - 1)
                                 + [f"send {count - 1}", "returned"])
