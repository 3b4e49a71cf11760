"""The stored Responses records: scoped per key, bounded in size and count, expiring; in a
worker's memory, or in a real Redis shared by every store that points at it."""

from __future__ import annotations

import redis

from llm_router_api.core.responses_store import ResponseStore
from tests.support.procs import RedisServer, wait_for

RECORD = {"response": {"id": "resp_1", "output": []}, "input": [], "provider": "p",
          "native": False}


def check_basics(store: ResponseStore, other: ResponseStore) -> None:
    assert store.put("key-a", "resp_1", RECORD)
    assert other.get("key-a", "resp_1") == RECORD
    assert other.get("key-b", "resp_1") is None  # another key's scope
    assert not other.delete("key-b", "resp_1")
    assert store.delete("key-a", "resp_1")
    assert other.get("key-a", "resp_1") is None
    assert not store.put("key-a", "big", {**RECORD, "input": ["x" * 2000]})  # over max_bytes
    assert store.get("key-a", "big") is None


def test_memory_store_scope_size_count_and_expiry() -> None:
    store = ResponseStore(ttl=3600, max_bytes=1000, max_stored=3)
    check_basics(store, store)
    for index in range(5):
        store.put("", f"r{index}", RECORD)
    assert [store.get("", f"r{i}") is not None for i in range(5)] == [False, False] + [True] * 3
    short = ResponseStore(ttl=0.2, max_bytes=1000, max_stored=3)
    short.put("", "r", RECORD)
    wait_for(lambda: short.get("", "r") is None, 10, "the record to expire")


def test_redis_store_is_shared_and_expires(redis_server: RedisServer) -> None:
    def client() -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=redis_server.port)

    store = ResponseStore(ttl=60, max_bytes=1000, max_stored=1, redis=client(), prefix="t:")
    other = ResponseStore(ttl=60, max_bytes=1000, max_stored=1, redis=client(), prefix="t:")
    check_basics(store, other)
    store.put("key-a", "resp_2", RECORD)
    store.put("key-a", "resp_3", RECORD)  # max_stored bounds memory only; Redis uses the TTL
    assert 0 < client().pttl("t:responses:key-a:resp_2") <= 60_000
    assert other.get("key-a", "resp_2") == RECORD
