"""``LeanLine``: script calls reuse their connections without the pool's per-call work, and
still never use one that is closed, half-read, or open to a primary that was replaced (the
Sentinel case is ``test_sentinel_failover``), on a real Redis."""

from __future__ import annotations

import pytest
import redis

from llm_router_api.base import redis_link
from llm_router_api.base.redis_link import LeanScript, lean_line
from tests.support.procs import RedisServer

INCR = "return redis.call('INCR', KEYS[1])"


def connections(raw: redis.Redis) -> int:
    """Connections Redis has open from clients other than ``raw``."""
    return sum(1 for c in raw.client_list() if c["id"] != str(raw.client_id()))


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis(port=redis_server.port, socket_timeout=2)


def test_calls_reuse_one_connection(client: redis.Redis, redis_server: RedisServer) -> None:
    raw = redis.Redis(port=redis_server.port, decode_responses=True)
    script = LeanScript(client, INCR)
    assert script(keys=["lean:reuse"]) == 1  # loads the script (through redis-py's pool)
    before = connections(raw)
    values = [script(keys=["lean:reuse"]) for _ in range(20)]
    assert values == list(range(2, 22))
    assert connections(raw) == before  # the one connection of the first call, reused
    line = lean_line(client.connection_pool)
    assert len(line._idle) == 1


def test_a_connection_the_server_closed_is_replaced_before_use(
        client: redis.Redis, redis_server: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    script = LeanScript(client, INCR)
    assert script(keys=["lean:closed"]) == 1
    raw = redis.Redis(port=redis_server.port, decode_responses=True)
    raw.client_kill_filter(_type="normal", skipme=True)  # Redis drops the idle connection
    monkeypatch.setattr(redis_link, "IDLE_CHECK", 0.0)  # it counts as idle long enough
    assert script(keys=["lean:closed"]) == 2  # no ConnectionError: checked, reconnected


def test_a_failed_call_gives_its_connection_back_disconnected(client: redis.Redis) -> None:
    failing = LeanScript(client, "return redis.error_reply('no')")
    client.script_load("return redis.error_reply('no')")
    script = LeanScript(client, INCR)
    assert script(keys=["lean:failed"]) == 1
    line = lean_line(client.connection_pool)
    (used, _, _), = line._idle
    with pytest.raises(redis.ResponseError):
        failing()
    assert line._idle == [] and used._sock is None  # not kept: back to the pool, closed
    assert script(keys=["lean:failed"]) == 2


def test_drop_disconnects_idle_connections_and_those_in_use(client: redis.Redis) -> None:
    script = LeanScript(client, INCR)
    line = lean_line(client.connection_pool)
    assert script(keys=["lean:drop"]) == 1
    (idle, _, _), = line._idle
    busy, generation = line.take()  # a call on its way during the failover...
    assert busy is idle
    line.drop()
    line.give(busy, generation)  # ...comes back after it
    assert busy._sock is None and line._idle == []
    assert script(keys=["lean:drop"]) == 2  # a fresh connection from the pool


def test_a_connection_given_back_while_a_drop_runs_is_discarded_when_next_taken(
        client: redis.Redis) -> None:
    """Under threads, a call whose ``give`` checked the generation just before a ``drop`` may
    park its connection after the drop emptied the idle list: the next ``take`` discards it
    instead of using a connection to the replaced primary (or leaking it from the pool)."""
    script = LeanScript(client, INCR)
    line = lean_line(client.connection_pool)
    assert script(keys=["lean:race"]) == 1
    late, generation = line.take()
    socket = late._sock
    line.drop()
    line._idle.append((late, 0.0, generation))  # what the racing give appended
    fresh, now = line.take()
    # disconnected, back to the pool (which may hand the same object out again, reconnected)
    assert socket is not None and fresh._sock is not socket and now == generation + 1
    line.give(fresh, now)
    assert script(keys=["lean:race"]) == 2
