"""Shared fixtures: stand-in upstreams, a private Redis, config files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from standin import StandIn
from tests.support.procs import RedisServer


@pytest.fixture(scope="module")
def upstream() -> Iterator[StandIn]:
    """One OpenAI/Ollama/Anthropic stand-in for the module; behaviour reset per test."""
    server = StandIn(name="up1")
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=False)
def fresh_upstream(upstream: StandIn) -> StandIn:
    upstream.reset()
    return upstream


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()
