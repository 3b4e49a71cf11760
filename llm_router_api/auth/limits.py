"""Per-key limits: requests per minute, tokens per minute, concurrent requests.

``admit(key)`` decides atomically and returns an ``Admission`` (with the ``x-ratelimit-*``
headers to send), or raises ``RateLimited`` (429 with ``Retry-After``). A key with
``max_concurrent`` holds a lease, granted by the admission into the worker's lease store's set
of that key (``base.leases``, kind ``KEY``), until it is released; releases and renewals are the
lease store's (``release``/``renew`` here only hand the admission's lease to it). Leases expire
after the lease TTL unless renewed, so a crashed worker frees them.

Requests per minute is a sliding 60-second window of admitted requests (at most the limit of
entries, so counting is cheap). Tokens per minute are kept in one-second buckets: an admission
sums at most 61 of them whatever the traffic, and tokens count for 60 to 61 seconds, so no
60-second window ever lets a key past its budget.

``MemoryLimiter`` serves one process. ``RedisLimiter`` (``auth.redis_limits``) keeps one shared
budget for every worker and instance, with one Lua script per decision and Redis' own clock.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field

from llm_router_api.auth.keys import ApiKey
from llm_router_api.base.leases import KEY, Held, LeaseStore, MemoryLeases
from llm_router_api.errors import RateLimited

WINDOW = 60.0
#: Tokens per minute are counted in buckets of this many seconds (the Lua uses the same).
BUCKET = 1.0
BUCKETS = int(WINDOW / BUCKET) + 1  # the current bucket and the 60 before it


@dataclass
class Admission:
    key_id: str
    lease_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The key has a tokens-per-minute budget: charge what the answer used.
    charges_tokens: bool = False

    @staticmethod
    def new_id() -> str:
        """Admission and lease ids are chosen by the gateway, so every outcome is known."""
        return uuid.uuid4().hex


def rate_headers(key: ApiKey, requests_left: int | None,
                 tokens_left: int | None) -> dict[str, str]:
    headers = {}
    if key.requests_per_minute is not None and requests_left is not None:
        headers["x-ratelimit-limit-requests"] = str(key.requests_per_minute)
        headers["x-ratelimit-remaining-requests"] = str(max(0, requests_left))
    if key.tokens_per_minute is not None and tokens_left is not None:
        headers["x-ratelimit-limit-tokens"] = str(key.tokens_per_minute)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, tokens_left))
    return headers


def refusal(key: ApiKey, what: str, retry_after: float, requests_left: int | None,
            tokens_left: int | None) -> RateLimited:
    return RateLimited(f"rate limit reached for {what}", code=f"rate_limit_{what}",
                       retry_after=max(1.0, retry_after),
                       extra_headers=rate_headers(key, requests_left, tokens_left))


def limited(key: ApiKey) -> bool:
    return any(v is not None for v in (key.requests_per_minute, key.tokens_per_minute,
                                       key.max_concurrent))


class Limiter(ABC):
    """``leases``: the worker's lease store, where concurrency slots are granted and released."""

    def __init__(self, lease_ttl: float, leases: LeaseStore | None = None) -> None:
        self.lease_ttl = lease_ttl
        self.leases = leases if leases is not None else MemoryLeases()

    @abstractmethod
    def admit(self, key: ApiKey) -> Admission:
        """Count one request for ``key`` or raise ``RateLimited``."""

    @abstractmethod
    def record_tokens(self, key_id: str, tokens: int) -> None:
        """Charge ``tokens`` (prompt + completion) to the key's per-minute budget."""

    def release(self, admission: Admission) -> None:
        """End the admission's concurrent slot (idempotent): the lease store's release."""
        if admission.lease_id is not None:
            self.leases.release(admission.lease_id, Held(KEY, admission.key_id))

    def renew(self, admissions: list[Admission]) -> None:
        """Push the expiry of these live leases to now + the lease TTL (the worker's renewal is
        ``leases.renew``: every held lease of every kind)."""
        self.leases.renew_now({a.lease_id: Held(KEY, a.key_id) for a in admissions
                               if a.lease_id is not None}, self.lease_ttl)

    def close(self) -> None:  # noqa: B027 - nothing to close in memory
        """Release connections."""


class TokenBuckets:
    """Tokens charged per one-second bucket; O(1) amortised to add, drop and sum."""

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}  # oldest first: the clock only moves forward
        self.total = 0

    def add(self, now: float, tokens: int) -> None:
        bucket = int(now // BUCKET)
        self._buckets[bucket] = self._buckets.get(bucket, 0) + tokens
        self.total += tokens

    def used(self, now: float) -> int:
        """Tokens charged in the window ending at ``now`` (older buckets are dropped)."""
        oldest = int(now // BUCKET) - BUCKETS + 1
        while self._buckets:
            bucket = next(iter(self._buckets))
            if bucket >= oldest:
                break
            self.total -= self._buckets.pop(bucket)
        return self.total

    def retry_after(self, now: float) -> float:
        """Seconds until the oldest bucket leaves the window."""
        if not self._buckets:
            return 1.0
        return (next(iter(self._buckets)) + BUCKETS) * BUCKET - now


class MemoryLimiter(Limiter):
    """One process's budgets; thread-safe (under the lease store's lock: a concurrency slot is
    granted in its in-process set of the key)."""

    def __init__(self, lease_ttl: float, leases: LeaseStore | None = None) -> None:
        super().__init__(lease_ttl, leases)
        self._sets = self.leases.memory
        self._lock = self._sets.lock
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, TokenBuckets] = {}

    def admit(self, key: ApiKey) -> Admission:
        now = time.monotonic()
        with self._lock:
            requests = self._window(key.id, now)
            tokens = self._tokens.setdefault(key.id, TokenBuckets())
            used_tokens = tokens.used(now)
            leases = self._sets.table(KEY, key.id)
            rpm, tpm = key.requests_per_minute, key.tokens_per_minute
            requests_left = None if rpm is None else rpm - len(requests)
            tokens_left = None if tpm is None else tpm - used_tokens
            if rpm is not None and len(requests) >= rpm:
                raise refusal(key, "requests", requests[0] + WINDOW - now, 0, tokens_left)
            if tpm is not None and used_tokens >= tpm:
                raise refusal(key, "tokens", tokens.retry_after(now), requests_left, 0)
            if key.max_concurrent is not None and leases.live(now) >= key.max_concurrent:
                raise refusal(key, "concurrent", 1.0, requests_left, tokens_left)
            if rpm is not None:
                requests.append(now)
            lease_id = None
            if key.max_concurrent is not None:
                lease_id = Admission.new_id()
                leases.add(lease_id, now + self.lease_ttl)
            left = None if requests_left is None else requests_left - 1
            return Admission(key.id, lease_id, rate_headers(key, left, tokens_left))

    def _window(self, key_id: str, now: float) -> deque[float]:
        entries = self._requests.setdefault(key_id, deque())
        while entries and entries[0] <= now - WINDOW:
            entries.popleft()
        return entries

    def record_tokens(self, key_id: str, tokens: int) -> None:
        if tokens > 0:
            with self._lock:
                self._tokens.setdefault(key_id, TokenBuckets()).add(time.monotonic(), tokens)
