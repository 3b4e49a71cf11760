"""Per-key limits: requests per minute, tokens per minute, concurrent requests.

``admit(key)`` decides atomically and returns an ``Admission`` (with the ``x-ratelimit-*``
headers to send), or raises ``RateLimited`` (429 with ``Retry-After``). A key with
``max_concurrent`` holds a lease until ``release(admission)`` (idempotent, exactly once per
admission); leases expire after the lease TTL unless renewed, so a crashed worker frees them.

Requests per minute is a sliding 60-second window of admitted requests (at most the limit of
entries, so counting is cheap). Tokens per minute are kept in one-second buckets: an admission
sums at most 61 of them whatever the traffic, and tokens count for 60 to 61 seconds, so no
60-second window ever lets a key past its budget.

``MemoryLimiter`` serves one process. ``RedisLimiter`` (``auth.redis_limits``) keeps one shared
budget for every worker and instance, with one Lua script per decision and Redis' own clock.
"""

from __future__ import annotations

import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field

from llm_router_api.auth.keys import ApiKey
from llm_router_api.base.leases import LeaseTable
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
    """One process's budgets; thread-safe."""

    def __init__(self, lease_ttl: float) -> None:
        super().__init__(lease_ttl)
        self._lock = threading.Lock()
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, TokenBuckets] = {}
        self._leases: dict[str, LeaseTable] = {}

    def admit(self, key: ApiKey) -> Admission:
        now = time.monotonic()
        with self._lock:
            requests = self._window(key.id, now)
            tokens = self._tokens.setdefault(key.id, TokenBuckets())
            used_tokens = tokens.used(now)
            leases = self._leases.setdefault(key.id, LeaseTable())
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

    def release(self, admission: Admission) -> None:
        if admission.lease_id is None:
            return
        with self._lock:
            self._leases.setdefault(admission.key_id, LeaseTable()).remove(admission.lease_id)

    def record_tokens(self, key_id: str, tokens: int) -> None:
        if tokens > 0:
            with self._lock:
                self._tokens.setdefault(key_id, TokenBuckets()).add(time.monotonic(), tokens)

    def renew(self, admissions: list[Admission]) -> None:
        expiry = time.monotonic() + self.lease_ttl
        with self._lock:
            for admission in admissions:
                if admission.lease_id is not None:
                    table = self._leases.setdefault(admission.key_id, LeaseTable())
                    table.renew(admission.lease_id, expiry)
