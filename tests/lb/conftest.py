"""Stores for the load-balancing tests: every test runs on memory and on a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from llm_router_api.base.lb.redis_store import RedisStore
from llm_router_api.base.lb.state import MemoryStore, StateStore
from llm_router_api.settings import load_settings
from tests.support.procs import RedisServer


def redis_store(server: RedisServer, prefix: str | None = None) -> RedisStore:
    settings = load_settings({}, redis_host="127.0.0.1", redis_port=server.port,
                             redis_prefix=prefix or f"t{uuid.uuid4().hex[:8]}:")
    return RedisStore.from_settings(settings)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    made = redis_store(request.getfixturevalue("redis_server"))
    yield made
    made.close()
