"""Per-key limits: requests per minute, tokens per minute, concurrent requests.

``admit(key)`` decides atomically and returns an ``Admission`` (with the ``x-ratelimit-*``
headers to send), or raises ``RateLimited`` (429 with ``Retry-After``). A key with
``max_concurrent`` holds a lease until ``release(admission)`` (idempotent, exactly once per
admission); leases expire after the lease TTL unless renewed, so a crashed worker frees them.
Windows are sliding 60-second windows, so no boundary lets a key through twice its limit.

``MemoryLimiter`` serves one process. ``RedisLimiter`` keeps one shared budget for every worker
and instance, with one Lua script per decision and Redis' own clock.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from llm_router_api.auth.keys import ApiKey
from llm_router_api.base.redis_link import Fallback
from llm_router_api.errors import RateLimited

WINDOW = 60.0


@dataclass
class Admission:
    key_id: str
    lease_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The key has a tokens-per-minute budget: charge what the answer used.
    charges_tokens: bool = False


def _headers(key: ApiKey, requests_left: int | None, tokens_left: int | None) -> dict[str, str]:
    headers = {}
    if key.requests_per_minute is not None and requests_left is not None:
        headers["x-ratelimit-limit-requests"] = str(key.requests_per_minute)
        headers["x-ratelimit-remaining-requests"] = str(max(0, requests_left))
    if key.tokens_per_minute is not None and tokens_left is not None:
        headers["x-ratelimit-limit-tokens"] = str(key.tokens_per_minute)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, tokens_left))
    return headers


def _refuse(key: ApiKey, what: str, retry_after: float, requests_left: int | None,
            tokens_left: int | None) -> RateLimited:
    return RateLimited(f"rate limit reached for {what}", code=f"rate_limit_{what}",
                       retry_after=max(1.0, retry_after),
                       extra_headers=_headers(key, requests_left, tokens_left))


def limited(key: ApiKey) -> bool:
    return any(v is not None for v in (key.requests_per_minute, key.tokens_per_minute,
                                       key.max_concurrent))


class Limiter(ABC):
    def __init__(self, lease_ttl: float) -> None:
        self.lease_ttl = lease_ttl

    @abstractmethod
    def admit(self, key: ApiKey) -> Admission:
        """Count one request for ``key`` or raise ``RateLimited``."""

    @abstractmethod
    def release(self, admission: Admission) -> None:
        """End the admission's concurrent slot (idempotent)."""

    @abstractmethod
    def record_tokens(self, key_id: str, tokens: int) -> None:
        """Charge ``tokens`` (prompt + completion) to the key's per-minute budget."""

    @abstractmethod
    def renew(self, admissions: list[Admission]) -> None:
        """Push the expiry of these live leases to now + the lease TTL (long streams)."""


class MemoryLimiter(Limiter):
    """One process's budgets; thread-safe."""

    def __init__(self, lease_ttl: float) -> None:
        super().__init__(lease_ttl)
        self._lock = threading.Lock()
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, deque[tuple[float, int]]] = {}
        self._leases: dict[str, dict[str, float]] = {}

    def admit(self, key: ApiKey) -> Admission:
        now = time.monotonic()
        with self._lock:
            requests = self._window(self._requests, key.id, now)
            tokens = self._token_window(key.id, now)
            used_tokens = sum(n for _, n in tokens)
            leases = {k: v for k, v in self._leases.get(key.id, {}).items() if v > now}
            self._leases[key.id] = leases
            rpm, tpm = key.requests_per_minute, key.tokens_per_minute
            requests_left = None if rpm is None else rpm - len(requests)
            tokens_left = None if tpm is None else tpm - used_tokens
            if rpm is not None and len(requests) >= rpm:
                raise _refuse(key, "requests", requests[0] + WINDOW - now, 0, tokens_left)
            if tpm is not None and used_tokens >= tpm:
                raise _refuse(key, "tokens", tokens[0][0] + WINDOW - now, requests_left, 0)
            if key.max_concurrent is not None and len(leases) >= key.max_concurrent:
                raise _refuse(key, "concurrent", 1.0, requests_left, tokens_left)
            requests.append(now)
            lease_id = None
            if key.max_concurrent is not None:
                lease_id = uuid.uuid4().hex
                leases[lease_id] = now + self.lease_ttl
            left = None if requests_left is None else requests_left - 1
            return Admission(key.id, lease_id, _headers(key, left, tokens_left))

    def _window(self, table: dict[str, deque[float]], key_id: str, now: float) -> deque[float]:
        entries = table.setdefault(key_id, deque())
        while entries and entries[0] <= now - WINDOW:
            entries.popleft()
        return entries

    def _token_window(self, key_id: str, now: float) -> deque[tuple[float, int]]:
        entries = self._tokens.setdefault(key_id, deque())
        while entries and entries[0][0] <= now - WINDOW:
            entries.popleft()
        return entries

    def release(self, admission: Admission) -> None:
        if admission.lease_id is None:
            return
        with self._lock:
            self._leases.get(admission.key_id, {}).pop(admission.lease_id, None)

    def record_tokens(self, key_id: str, tokens: int) -> None:
        if tokens > 0:
            with self._lock:
                self._tokens.setdefault(key_id, deque()).append((time.monotonic(), tokens))

    def renew(self, admissions: list[Admission]) -> None:
        expiry = time.monotonic() + self.lease_ttl
        with self._lock:
            for admission in admissions:
                leases = self._leases.get(admission.key_id, {})
                if admission.lease_id in leases:
                    leases[admission.lease_id] = expiry


# KEYS: requests zset, tokens zset, leases zset
# ARGV: rpm limit (0 = none), tpm limit, concurrency limit, lease id, lease ttl ms, request id
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = 60000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local rpm, tpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local requests = redis.call('ZCARD', KEYS[1])
local used = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  used = used + tonumber(string.match(member, ':(%d+)$'))
end
local function oldest(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) + window - now end
  return 1000
end
if rpm > 0 and requests >= rpm then return {0, 'requests', oldest(KEYS[1]), 0, tpm - used} end
if tpm > 0 and used >= tpm then return {0, 'tokens', oldest(KEYS[2]), rpm - requests, 0} end
if conc > 0 and redis.call('ZCARD', KEYS[3]) >= conc then
  return {0, 'concurrent', 1000, rpm - requests, tpm - used}
end
redis.call('ZADD', KEYS[1], now, ARGV[6])
redis.call('PEXPIRE', KEYS[1], window + 1000)
if conc > 0 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[4])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[5]) + 1000)
end
return {1, 'ok', 0, rpm - requests - 1, tpm - used}
"""
# KEYS: tokens zset; ARGV: member ("<uuid>:<tokens>")
RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 61000)
return 1
"""

# KEYS: leases zset; ARGV: lease id, ttl ms
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)
end
return 1
"""


class RedisLimiter(Limiter):
    """One budget per key shared by every worker and instance; per-process budgets (and one
    warning in the log) while Redis cannot be reached."""

    def __init__(self, client: Any, prefix: str, lease_ttl: float, where: str = "redis") -> None:
        super().__init__(lease_ttl)
        self._redis = client
        self._prefix = prefix + "auth:"
        self._admit = client.register_script(ADMIT)
        self._record = client.register_script(RECORD)
        self._renew = client.register_script(RENEW)
        self._memory = MemoryLimiter(lease_ttl)
        self._fallback = Fallback(where, "API-key limits")

    def _keys(self, key_id: str) -> list[str]:
        return [f"{self._prefix}{key_id}:{part}" for part in ("requests", "tokens", "leases")]

    def admit(self, key: ApiKey) -> Admission:
        lease_id = uuid.uuid4().hex if key.max_concurrent is not None else ""
        args = [key.requests_per_minute or 0, key.tokens_per_minute or 0,
                key.max_concurrent or 0, lease_id, int(self.lease_ttl * 1000), uuid.uuid4().hex]

        def shared() -> Admission:
            ok, what, retry_ms, requests_left, tokens_left = self._admit(
                keys=self._keys(key.id), args=args)
            what = what.decode() if isinstance(what, bytes) else str(what)
            if not ok:
                raise _refuse(key, what, int(retry_ms) / 1000, int(requests_left),
                              int(tokens_left))
            return Admission(key.id, lease_id or None,
                             _headers(key, int(requests_left), int(tokens_left)))

        return self._fallback.run(shared, lambda: self._memory.admit(key))

    def release(self, admission: Admission) -> None:
        if admission.lease_id is None:
            return
        lease_id = admission.lease_id
        # Released in both: the lease lives in whichever granted it (the other one ignores it).
        self._fallback.run(lambda: self._redis.zrem(self._keys(admission.key_id)[2], lease_id),
                           lambda: 0)
        self._memory.release(admission)

    def record_tokens(self, key_id: str, tokens: int) -> None:
        if tokens > 0:
            self._fallback.run(
                lambda: self._record(keys=[self._keys(key_id)[1]],
                                     args=[f"{uuid.uuid4().hex}:{tokens}"]),
                lambda: self._memory.record_tokens(key_id, tokens))

    def renew(self, admissions: list[Admission]) -> None:
        ttl_ms = int(self.lease_ttl * 1000)
        def renew_one(admission: Admission) -> None:
            self._renew(keys=[self._keys(admission.key_id)[2]],
                        args=[admission.lease_id, ttl_ms])

        for admission in admissions:
            if admission.lease_id:
                self._fallback.run(functools.partial(renew_one, admission), lambda: None)
        self._memory.renew(admissions)
