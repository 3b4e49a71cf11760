"""Keys and per-key limits as units, on a memory limiter and on a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from llm_router_api.auth.keys import ApiKey, KeyRing, KeysFileError, digest
from llm_router_api.auth.limits import Limiter, MemoryLimiter
from llm_router_api.auth.redis_limits import RedisLimiter
from llm_router_api.base.redis_link import redis_client
from llm_router_api.errors import RateLimited, Unauthorized
from llm_router_api.settings import load_settings
from tests.support.procs import RedisServer


def test_bearer_and_x_api_key_both_authenticate() -> None:
    ring = KeyRing([ApiKey(id="a", key="secret-key-a"), ApiKey(id="b", sha256=digest("key-b-123"))])
    assert ring.authenticate({"Authorization": "Bearer secret-key-a"}).id == "a"
    assert ring.authenticate({"x-api-key": "key-b-123"}).id == "b"
    with pytest.raises(Unauthorized):
        ring.authenticate({"Authorization": "Bearer nope-nope"})
    with pytest.raises(Unauthorized):
        ring.authenticate({})


def test_only_digests_are_kept() -> None:
    key = ApiKey(id="a", key="secret-key-a")
    assert key.key is None and key.sha256 == digest("secret-key-a")
    assert "secret-key-a" not in repr(key)


def test_keys_from_env_and_file(tmp_path: Path) -> None:
    file = tmp_path / "keys.json"
    file.write_text(json.dumps({"keys": [{"id": "team", "key": "team-key-123",
                                          "requests_per_minute": 3, "models": ["m1"]}]}))
    settings = load_settings({"LLM_ROUTER_API_KEYS": "env-key-0001,env-key-0002",
                              "LLM_ROUTER_API_KEYS_FILE": str(file)})
    ring = KeyRing.from_settings(settings)
    assert ring.authenticate({"Authorization": "Bearer env-key-0002"}).id == "key-2"
    team = ring.authenticate({"x-api-key": "team-key-123"})
    assert team.requests_per_minute == 3
    assert team.allows("m1") and team.allows("m1:latest") and not team.allows("m2")


@pytest.mark.parametrize("content,where", [
    ("{", "line 1"),
    ('{"keys": [{"id": "x"}]}', "needs 'key' or"),
    ('{"keys": [{"id": "x", "key": "long-enough", "colour": 1}]}', "$.keys[0].colour"),
    ('{"keys": [{"id": "x", "key": "long-enough"}, {"id": "x", "key": "other-long"}]}',
     "duplicate key ids: x"),
])
def test_bad_keys_file_names_the_place(tmp_path: Path, content: str, where: str) -> None:
    file = tmp_path / "keys.json"
    file.write_text(content)
    with pytest.raises(KeysFileError) as caught:
        KeyRing.from_settings(load_settings({"LLM_ROUTER_API_KEYS_FILE": str(file)}))
    assert where in str(caught.value)
    assert "long-enough" not in str(caught.value)


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter(lease_ttl=1.0)
        return
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    yield RedisLimiter(client, "test:", lease_ttl=1.0)


def test_requests_per_minute_is_exact(limiter: Limiter) -> None:
    key = ApiKey(id="k", key="limited-key", requests_per_minute=3)
    left = [limiter.admit(key).headers["x-ratelimit-remaining-requests"] for _ in range(3)]
    assert left == ["2", "1", "0"]
    with pytest.raises(RateLimited) as caught:
        limiter.admit(key)
    headers = caught.value.headers()
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0"


def test_tokens_per_minute(limiter: Limiter) -> None:
    key = ApiKey(id="t", key="token-key-1", tokens_per_minute=100)
    limiter.admit(key)
    limiter.record_tokens("t", 60)
    assert limiter.admit(key).headers["x-ratelimit-remaining-tokens"] == "40"
    limiter.record_tokens("t", 40)
    with pytest.raises(RateLimited) as caught:
        limiter.admit(key)
    assert caught.value.code == "rate_limit_tokens"


def test_concurrent_slots_are_leases(limiter: Limiter) -> None:
    key = ApiKey(id="c", key="concurrent-key", max_concurrent=1)
    first = limiter.admit(key)
    with pytest.raises(RateLimited):
        limiter.admit(key)
    limiter.release(first)
    limiter.release(first)  # idempotent
    second = limiter.admit(key)
    limiter.renew([second])
    with pytest.raises(RateLimited):
        limiter.admit(key)
    import time

    time.sleep(1.3)  # a crashed holder's lease expires after the TTL (1 s here)
    limiter.admit(key)


def test_redis_gone_falls_back_to_per_process_limits(caplog: pytest.LogCaptureFixture) -> None:
    from tests.support.procs import free_port

    settings = load_settings({"LLM_ROUTER_REDIS_HOST": "127.0.0.1",
                              "LLM_ROUTER_REDIS_PORT": str(free_port())})
    client = redis_client(settings, decode_responses=False)
    limiter = RedisLimiter(client, "test:", lease_ttl=1.0)
    key = ApiKey(id="k", key="limited-key", requests_per_minute=2, max_concurrent=1)
    first = limiter.admit(key)
    limiter.release(first)
    limiter.admit(key)
    with pytest.raises(RateLimited):
        limiter.admit(key)  # still enforced, in this process
    limiter.record_tokens("k", 5)
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1  # said once, not per request
