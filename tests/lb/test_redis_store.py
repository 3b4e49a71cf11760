"""RedisStore specifics: shared between processes' stores, no wipe at startup, Redis outages."""

from __future__ import annotations

import logging
import time

import pytest

from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.redis_link import PROBE_INTERVAL, SOCKET_TIMEOUT
from tests.lb.conftest import redis_store
from tests.support.procs import RedisServer, wait_for


def test_a_new_store_on_the_same_prefix_sees_and_keeps_the_state(redis_server: RedisServer) -> None:
    first = redis_store(redis_server, "keep:")
    lease = first.acquire_lease("p0", 1, 30)
    first.incr("counters", "p0", 2)
    first.cool_down("p1", 30)
    restarted = redis_store(redis_server, "keep:")  # another instance starting up
    assert restarted.in_flight(["p0"]) == {"p0": 1}
    assert restarted.acquire_lease("p0", 1, 30) is None
    assert restarted.get_hash("counters") == {"p0": 2.0}
    assert restarted.cooling(["p0", "p1"]) == {"p1"}
    assert lease is not None
    restarted.release_lease("p0", lease)  # released in the shared store, by anyone
    assert first.in_flight(["p0"]) == {"p0": 0}


def test_prefixes_keep_deployments_apart(redis_server: RedisServer) -> None:
    one, two = redis_store(redis_server, "one:"), redis_store(redis_server, "two:")
    assert one.acquire_lease("p0", 1, 30) is not None
    assert two.acquire_lease("p0", 1, 30) is not None


def test_redis_outage_falls_back_to_memory_and_comes_back(
        caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer()
    port = server.port
    store = redis_store(server, "outage:")
    candidates = [Candidate("p0", 1), Candidate("p1", 1)]
    shared = store.choose_lease("first", "s", candidates, 30)
    assert shared is not None and shared[1] is not None
    server.stop()
    caplog.set_level(logging.WARNING, logger="llm_router.redis")
    started = time.monotonic()
    local = store.choose_lease("first", "s", candidates, 30)  # from memory: p0 is free there
    assert local is not None and local[1] is not None and local[0] == "p0"
    for _ in range(20):  # served from memory, without waiting on Redis each time
        store.in_flight(["p0"])
    store.release_lease(shared[0], shared[1])  # kept until Redis answers again
    store.renew_leases({local[1]: local[0]}, 30)
    assert time.monotonic() - started < 3 * SOCKET_TIMEOUT
    assert store.degraded and store.pending_deliveries() >= 1  # the release (and the grant)
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1

    back = RedisServer(port=port)
    try:
        wait_for(lambda: not store.degraded, 30 * PROBE_INTERVAL, "the store to use Redis again")
        assert any("available again" in r.getMessage() for r in caplog.records)
        assert store.pending_deliveries() == 0
        assert store.in_flight(["p0", "p1"]) == {"p0": 0, "p1": 0}  # the new server is empty
        store.renew_leases({local[1]: local[0]}, 30)  # the request served from memory counts
        assert store.in_flight(["p0"]) == {"p0": 1}
        assert store.acquire_lease("p0", 1, 30) is None
        store.release_lease(local[0], local[1])
        assert store.acquire_lease("p0", 1, 30) is not None
    finally:
        back.stop()
