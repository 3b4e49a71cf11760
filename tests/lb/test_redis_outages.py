"""Every Redis failure is an outage, and no slot is left held by nobody when Redis returns.

Real ``redis-server`` processes: stalled with ``DEBUG SLEEP``, demoted with ``REPLICAOF``,
evicting (``volatile-lru``), starved with ``maxmemory``, busy with a long script, flushed with
``FLUSHALL``/``SCRIPT FLUSH``. Slots are counted from Redis itself. Bounds: "usable within 1 s of
Redis answering" is checked with a 3x margin.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping

import pytest
import redis

from llm_router_api.auth.keys import ApiKey
from llm_router_api.auth.limits import Admission
from llm_router_api.auth.redis_limits import RedisLimiter
from llm_router_api.base.lb.chooser import ChooserLimits, ProviderChooser
from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.lb.redis_store import RedisStore
from llm_router_api.base.lb.registry import build_strategy
from llm_router_api.base.leases import Held
from llm_router_api.base.redis_link import redis_client
from llm_router_api.errors import NoProviderAvailable
from llm_router_api.schemas.config import ModelConfig
from llm_router_api.settings import load_settings
from tests.lb.conftest import redis_store
from tests.support.procs import RedisServer, wait_for

USABLE_WITHIN = 3 * 1.0  # SPEC: every slot usable within 1 s of Redis answering
CAP = 4
CANDIDATES = [Candidate("p0", CAP)]


@pytest.fixture
def server() -> Iterator[RedisServer]:
    made = RedisServer()
    yield made
    made.stop()


def raw(server: RedisServer, timeout: float = 30.0) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=timeout, decode_responses=True)


def limiter_for(server: RedisServer, prefix: str) -> RedisLimiter:
    settings = load_settings({}, redis_host="127.0.0.1", redis_port=server.port)
    return RedisLimiter(redis_client(settings, decode_responses=False), prefix, lease_ttl=30)


def live(client: redis.Redis, key: str) -> int:
    return int(client.zcard(key))


def in_background(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_a_stall_leaves_no_slot_held_by_nobody(server: RedisServer) -> None:
    store, limiter = redis_store(server, "stall:"), limiter_for(server, "stall:")
    key = ApiKey(id="k", key="stall-key-1", max_concurrent=CAP)
    client = raw(server)
    held = [store.choose_lease("first", "s", CANDIDATES, 30) for _ in range(CAP)]
    admitted = [limiter.admit(key) for _ in range(CAP)]
    assert live(client, "stall:lease:p0") == CAP and live(client, "stall:auth:k:leases") == CAP

    stall = in_background(lambda: raw(server).execute_command("DEBUG", "SLEEP", "2"))
    wait_for(lambda: store.in_flight(["p0"]) == {"p0": 0}, 5, "the store to notice the stall")
    assert store.degraded
    for chosen in held:  # requests ending during the stall: their releases must not be lost
        assert chosen is not None and chosen[1] is not None
        store.release_lease(chosen[0], chosen[1])
    for admission in admitted:
        limiter.release(admission)
    # New requests during the stall time out in Redis (which runs them when it wakes) and are
    # served from memory; they end before Redis is back.
    late = [store.choose_lease("first", "s", CANDIDATES, 30) for _ in range(CAP)]
    late_admissions = [limiter.admit(key) for _ in range(CAP)]
    for chosen in late:
        assert chosen is not None and chosen[1] is not None
        store.release_lease(chosen[0], chosen[1])
    for admission in late_admissions:
        limiter.release(admission)
    stall.join(10)

    wait_for(lambda: (live(client, "stall:lease:p0"), live(client, "stall:auth:k:leases"),
                      store.degraded, limiter.pending_deliveries()) == (0, 0, False, 0),
             USABLE_WITHIN, "every slot to be free in Redis")
    again = [store.choose_lease("first", "s", CANDIDATES, 30) for _ in range(CAP)]
    assert all(c is not None for c in again) and live(client, "stall:lease:p0") == CAP
    assert store.choose_lease("first", "s", CANDIDATES, 30) is None  # the cap holds again
    assert [limiter.admit(key).lease_id is not None for _ in range(CAP)] == [True] * CAP


def test_demoted_to_replica_is_an_outage_and_the_link_comes_back(server: RedisServer,
                                                                 redis_server: RedisServer,
                                                                 caplog: pytest.LogCaptureFixture
                                                                 ) -> None:
    store = redis_store(server, "demote:")
    client = raw(server)
    client.execute_command("REPLICAOF", "127.0.0.1", str(redis_server.port))
    wait_for(lambda: client.info("replication")["master_link_status"] == "up", 10,
             "the replica to sync")
    caplog.set_level(logging.WARNING, logger="llm_router.redis")
    chosen = store.choose_lease("first", "s", CANDIDATES, 30)  # READONLY: served from memory
    assert chosen is not None and store.degraded
    assert any("ReadOnlyError" in r.getMessage() for r in caplog.records)
    store.release_lease("p0", str(chosen[1]))
    client.execute_command("REPLICAOF", "NO", "ONE")
    wait_for(lambda: not store.degraded, USABLE_WITHIN, "the store to use Redis again")
    assert store.choose_lease("first", "s", CANDIDATES, 30) is not None
    assert live(client, "demote:lease:p0") == 1


def test_out_of_memory_is_an_outage_and_releases_still_get_through(
        server: RedisServer) -> None:
    store, limiter = redis_store(server, "oom:"), limiter_for(server, "oom:")
    key = ApiKey(id="k", key="oom-key-123", max_concurrent=2, tokens_per_minute=1000)
    client = raw(server)
    chosen = store.choose_lease("first", "s", CANDIDATES, 30)
    admission = limiter.admit(key)
    assert chosen is not None and chosen[1] is not None
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")  # every write that needs memory is refused with OOM
    store.cool_down("p1", 5)  # a refused cool-down write is no error
    limiter.record_tokens("k", 10)
    assert store.degraded and store.cooling(["p1"]) == {"p1"}
    during = store.choose_lease("first", "s", CANDIDATES, 30)  # from memory now
    late = limiter.admit(key)
    assert during is not None and during[1] is not None and late.lease_id is not None
    for lease in (chosen, during):
        store.release_lease(lease[0], str(lease[1]))  # releases run even out of memory
    for done in (admission, late):
        limiter.release(done)
    wait_for(lambda: (live(client, "oom:lease:p0"), live(client, "oom:auth:k:leases"))
             == (0, 0), USABLE_WITHIN, "releases to get through")
    client.config_set("maxmemory", "0")
    wait_for(lambda: not store.degraded, USABLE_WITHIN, "the store to use Redis again")


def test_a_busy_script_is_an_outage(server: RedisServer) -> None:
    store = redis_store(server, "busy:")
    client = raw(server)
    client.config_set("busy-reply-threshold", "50")
    busy = in_background(lambda: raw(server).eval(
        "local s = tonumber(redis.call('TIME')[1]) "
        "while tonumber(redis.call('TIME')[1]) < s + 2 do end return 1", 0))
    wait_for(lambda: store.choose_lease("first", "s", CANDIDATES, 30) is not None
             and store.degraded, 5, "a BUSY answer")
    busy.join(10)
    wait_for(lambda: not store.degraded, USABLE_WITHIN, "the store to use Redis again")


def test_script_flush_costs_nothing(redis_server: RedisServer) -> None:
    store = redis_store(redis_server)
    client = raw(redis_server)
    for _ in range(5):
        client.script_flush()
        chosen = store.choose_lease("balanced", "s", CANDIDATES, 30)
        assert chosen is not None and chosen[1] is not None
        store.release_lease(chosen[0], chosen[1])
        assert not store.degraded


def test_flushall_renewal_restores_running_requests(redis_server: RedisServer) -> None:
    store = redis_store(redis_server)
    model = ModelConfig.model_validate({"name": "m", "providers": [
        {"id": "p0", "api_host": "http://127.0.0.1:9", "api_type": "openai",
         "max_concurrency": 2}]})
    chooser = ProviderChooser(build_strategy("balanced", store), store=store,
                              limits=ChooserLimits(acquire_timeout=0.2, lease_ttl=30))
    leases = [chooser.acquire(model) for _ in range(2)]
    raw(redis_server).flushall()
    assert store.in_flight(["p0"]) == {"p0": 0}
    chooser.renew()  # one renewal round
    assert store.in_flight(["p0"]) == {"p0": 2}
    for lease in leases:
        chooser.release(lease)
    chooser.renew()  # released leases are never renewed back
    assert store.in_flight(["p0"]) == {"p0": 0}


def test_key_leases_are_restored_too(redis_server: RedisServer) -> None:
    limiter = limiter_for(redis_server, "restore:")
    key = ApiKey(id="k", key="restore-key", max_concurrent=1)
    admission = limiter.admit(key)
    raw(redis_server).flushall()
    limiter.renew([admission])
    with pytest.raises(Exception, match="rate limit"):
        limiter.admit(key)
    limiter.release(admission)
    assert isinstance(limiter.admit(key), Admission)


def test_a_release_racing_a_renewal_is_not_brought_back(redis_server: RedisServer) -> None:
    store = redis_store(redis_server)
    model = ModelConfig.model_validate({"name": "m", "providers": [
        {"id": "p0", "api_host": "http://127.0.0.1:9", "api_type": "openai"}]})
    chooser = ProviderChooser(build_strategy("balanced", store), store=store)
    lease = chooser.acquire(model)
    renew = store.leases.renew_now

    def renew_while_released(leases: Mapping[str, Held], ttl: float) -> None:
        chooser.release(lease)  # the request ends while its renewal is on the way
        renew(leases, ttl)

    store.leases.renew_now = renew_while_released  # type: ignore[method-assign]
    chooser.renew()
    assert store.in_flight(["p0"]) == {"p0": 0}


@pytest.mark.parametrize(("policy", "warned"), [("volatile-lru", True), ("allkeys-lru", True),
                                                ("noeviction", False)])
def test_startup_warns_when_our_keys_can_be_evicted(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture, policy: str,
        warned: bool) -> None:
    client = raw(redis_server)
    client.config_set("maxmemory", "512mb")
    client.config_set("maxmemory-policy", policy)
    try:
        caplog.set_level(logging.WARNING, logger="llm_router.redis")
        RedisStore.from_settings(load_settings({}, redis_host="127.0.0.1",
                                               redis_port=redis_server.port)).close()
        lines = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
        assert bool(lines) is warned
        if policy.startswith("volatile"):
            assert "first" in lines[0]
    finally:
        client.config_set("maxmemory", "0")
        client.config_set("maxmemory-policy", "noeviction")


def test_evicted_leases_are_restored_by_renewal(server: RedisServer) -> None:
    """``volatile-lru`` with no room evicts every key with a TTL (the router's leases) and then
    refuses writes: an outage. When Redis has room again, one renewal round counts the running
    requests again, so the cap holds."""
    store = redis_store(server, "evict:")
    model = ModelConfig.model_validate({"name": "m", "providers": [
        {"id": "p0", "api_host": "http://127.0.0.1:9", "api_type": "openai",
         "max_concurrency": 2}]})
    chooser = ProviderChooser(build_strategy("balanced", store), store=store,
                              limits=ChooserLimits(acquire_timeout=0.2, lease_ttl=30))
    running = [chooser.acquire(model) for _ in range(2)]
    client = raw(server)
    client.config_set("maxmemory-policy", "volatile-lru")
    client.config_set("maxmemory", "1")
    store.cool_down("p1", 1)  # a write: Redis evicts what it can, then answers OOM
    assert store.degraded and not client.exists("evict:lease:p0")
    client.config_set("maxmemory", "0")
    wait_for(lambda: not store.degraded, USABLE_WITHIN, "the store to use Redis again")
    chooser.renew()
    assert live(client, "evict:lease:p0") == 2
    with pytest.raises(NoProviderAvailable):
        chooser.acquire(model)  # the cap holds: both slots are in use
    for lease in running:
        chooser.release(lease)
