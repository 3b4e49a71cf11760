"""State stores for load balancing: leases, counters and health, in memory or shared.

A lease is one acquired provider slot: a unique id with an expiry. "In flight" means the live
leases of a provider. ``acquire_lease`` is atomic with its capacity check, so ``max_concurrency``
is a hard cap; ``release_lease`` is idempotent; ``renew_leases`` pushes expiries forward while
requests run, so a crashed worker's leases expire by themselves.

``choose_lease`` is the one-step routing decision of the built-in strategies: among the given
candidates it skips those cooling down or at their cap, applies a pick rule (``picking``) to the
rest and leases the pick, all atomically (one Redis round trip).

``MemoryStore`` serves one process (thread-safe). ``RedisStore`` (``redis_store``) shares the same
operations across workers and instances.

Health (SPEC §13, "a provider comes back only by generating"). Per provider the store keeps a
failure count (``health:failures``: failures in a row, reset only by a generation success) and
a failure sequence number (``health:failseq``: bumped by every counted failure, never reset).

- ``record_failure`` counts a failure, bumps the sequence and cools the provider down for
  ``base × 2^(failures-1)`` (at most ``cap``), or for the upstream's ``Retry-After``.
- While the cool-down lasts, no lease is granted. After it, while the failure count is above
  zero, the provider is *half-open*: it takes a lease only when it holds none, so exactly one
  live trial request runs at a time — across every worker and instance with Redis, since the
  check and the grant are one atomic script. A crashed worker's trial expires with its lease
  (``LEASE_TTL``) and a long trial is kept alive by the ordinary lease renewal.
- ``record_success`` resets the failure count and ends the cool-down — only for a request that
  started after the latest failure: every grant carries the sequence number it saw (``Grant``),
  and a success (or failure) whose number is older changes nothing. A sequence number instead
  of a time stamp means no clock is compared at all (no monotonic-vs-Redis-clock question).
  A failure of a request that began before the latest failure is not counted again either, so
  ten requests failing together in one outage double the cool-down once, not ten times.
"""

from __future__ import annotations

import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence

from llm_router_api.base.lb.picking import Candidate, pick
from llm_router_api.base.leases import LeaseTable

FAILURES = "health:failures"
FAILSEQ = "health:failseq"


def new_lease_id() -> str:
    return uuid.uuid4().hex


class Grant(tuple[str, "str | None"]):
    """``(provider_id, lease_id)`` as granted, with the provider's health marks at that moment:
    ``seq`` (its failure sequence number) and ``trial`` (it was half-open: this is its trial)."""

    seq: int | None
    trial: bool

    def __new__(cls, provider_id: str, lease_id: str | None, seq: int | None = None,
                trial: bool = False) -> Grant:
        grant = super().__new__(cls, (provider_id, lease_id))
        grant.seq = seq
        grant.trial = trial
        return grant


def cool_seconds(failures: float, base: float, cap: float, retry_after: float | None) -> float:
    """The cool-down after the ``failures``-th failure in a row."""
    if retry_after:
        return retry_after
    return min(base * 2 ** min(failures - 1, 62), cap)


class StateStore(ABC):
    """What strategies, the chooser and the health tracker may keep."""

    @abstractmethod
    def acquire_lease(self, provider_id: str, cap: int | None, ttl: float) -> str | None:
        """A new lease on ``provider_id`` unless ``cap`` live leases exist; else ``None``."""

    @abstractmethod
    def choose_lease(self, rule: str, state_key: str, candidates: Sequence[Candidate],
                     ttl: float | None) -> Grant | None:
        """Pick among ``candidates`` by ``rule`` and lease the pick, atomically.

        Candidates cooling down or holding ``cap`` live leases (one when half-open) are
        skipped; the rule's state lives in the hash ``state_key``. Returns
        ``(provider_id, lease_id)`` with the pick's health marks, or ``None`` when no candidate
        is available. With ``ttl=None`` nothing is leased (lease id ``None``).
        """

    @abstractmethod
    def release_lease(self, provider_id: str, lease_id: str) -> None:
        """Drop the lease (no error if it expired or was already released)."""

    @abstractmethod
    def renew_leases(self, leases: Mapping[str, str], ttl: float) -> None:
        """Push the expiry of each ``lease_id -> provider_id`` to now + ``ttl``; a shared store
        re-creates leases it lost (restart, ``FLUSHALL``, eviction): they are still in use."""

    @abstractmethod
    def in_flight(self, provider_ids: Sequence[str]) -> dict[str, int]:
        """Live leases per provider."""

    @abstractmethod
    def incr(self, key: str, member: str, amount: float = 1.0) -> float:
        """Add to a counter in the hash ``key``; return the new value."""

    @abstractmethod
    def get_hash(self, key: str) -> dict[str, float]:
        """Every counter of the hash ``key``."""

    @abstractmethod
    def set_hash(self, key: str, values: Mapping[str, float]) -> None:
        """Set counters of the hash ``key``."""

    @abstractmethod
    def delete_hash(self, key: str, members: Sequence[str] | None = None) -> None:
        """Drop ``members`` of the hash ``key`` (all of it when ``None``)."""

    @abstractmethod
    def ewma(self, key: str, member: str, value: float, alpha: float) -> float:
        """Fold ``value`` into the moving average ``key[member]`` (first value: itself)."""

    @abstractmethod
    def cool_down(self, provider_id: str, seconds: float) -> None:
        """Take the provider out until now + ``seconds``."""

    @abstractmethod
    def cooling(self, provider_ids: Sequence[str]) -> set[str]:
        """Those of ``provider_ids`` cooling down now."""

    @abstractmethod
    def clear_cool_down(self, provider_id: str) -> None:
        """Bring the provider back."""

    @abstractmethod
    def record_failure(self, provider_id: str, seq: int | None, base: float, cap: float,
                       retry_after: float | None = None) -> float | None:
        """Count a failure and cool the provider down (see the module docstring); the seconds
        of cool-down, or ``None`` when ``seq`` is older than the latest failure (not counted).
        ``seq=None`` always counts."""

    @abstractmethod
    def record_success(self, provider_id: str, seq: int | None) -> bool:
        """A generation succeeded: reset the failure count and end the cool-down, unless
        ``seq`` is older than the latest failure (``None``: always). True when it reset."""

    @abstractmethod
    def health_marks(self, provider_ids: Sequence[str]) -> dict[str, tuple[float, int]]:
        """``(failures, seq)`` of each provider."""

    # -- a bounded log of short text entries (the console's recent requests) ----------------------
    def push_log(self, key: str, entries: Sequence[str], keep: int) -> None:
        """Append ``entries`` (oldest first) to the log ``key``; only the newest ``keep`` stay.

        Default: in this process (a shared store overrides it)."""
        logs: dict[str, deque[str]] = self.__dict__.setdefault("_logs", {})
        with self.__dict__.setdefault("_logs_lock", threading.Lock()):
            log = logs.get(key)
            if log is None or log.maxlen != keep:
                log = logs[key] = deque(log or (), maxlen=keep)
            log.extend(entries)

    def read_log(self, key: str) -> list[str]:
        """The entries of the log ``key``, oldest first."""
        with self.__dict__.setdefault("_logs_lock", threading.Lock()):
            return list(self.__dict__.get("_logs", {}).get(key, ()))

    def close(self) -> None:  # noqa: B027 - nothing to close in memory
        """Release connections."""


class MemoryStore(StateStore):
    """One process's state. Thread-safe; not shared between workers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[str, LeaseTable] = {}
        self._hashes: dict[str, dict[str, float]] = {}
        self._cool_until: dict[str, float] = {}

    def _table(self, provider_id: str) -> LeaseTable:
        return self._leases.setdefault(provider_id, LeaseTable())

    def _cap(self, provider_id: str, cap: int | None) -> int | None:
        """A half-open provider (failures, cool-down over) holds one lease at most."""
        if self._hashes.get(FAILURES, {}).get(provider_id, 0.0) > 0:
            return 1 if cap is None else min(cap, 1)
        return cap

    def acquire_lease(self, provider_id: str, cap: int | None, ttl: float) -> str | None:
        now = time.monotonic()
        with self._lock:
            leases = self._table(provider_id)
            cap = self._cap(provider_id, cap)
            if cap is not None and leases.live(now) >= cap:
                return None
            lease_id = new_lease_id()
            leases.add(lease_id, now + ttl)
            return lease_id

    def choose_lease(self, rule: str, state_key: str, candidates: Sequence[Candidate],
                     ttl: float | None) -> Grant | None:
        now = time.monotonic()
        with self._lock:
            in_flight: dict[str, int] = {}
            available: list[Candidate] = []
            for candidate in candidates:
                if self._cool_until.get(candidate.id, 0.0) > now:
                    continue
                in_flight[candidate.id] = self._table(candidate.id).live(now)
                cap = self._cap(candidate.id, candidate.cap)
                if cap is None or in_flight[candidate.id] < cap:
                    available.append(candidate)
            if not available:
                return None
            state = self._hashes.setdefault(state_key, {})
            index, updates = pick(rule, available, in_flight, state)
            state.update(updates)
            chosen = available[index].id
            seq = int(self._hashes.get(FAILSEQ, {}).get(chosen, 0))
            trial = self._hashes.get(FAILURES, {}).get(chosen, 0.0) > 0
            if ttl is None:
                return Grant(chosen, None, seq, trial)
            lease_id = new_lease_id()
            self._table(chosen).add(lease_id, now + ttl)
            return Grant(chosen, lease_id, seq, trial)

    def release_lease(self, provider_id: str, lease_id: str) -> None:
        with self._lock:
            self._table(provider_id).remove(lease_id)

    def renew_leases(self, leases: Mapping[str, str], ttl: float) -> None:
        expiry = time.monotonic() + ttl
        with self._lock:
            for lease_id, provider_id in leases.items():
                self._table(provider_id).renew(lease_id, expiry, restore=True)

    def in_flight(self, provider_ids: Sequence[str]) -> dict[str, int]:
        now = time.monotonic()
        with self._lock:
            return {pid: self._table(pid).live(now) for pid in provider_ids}

    def incr(self, key: str, member: str, amount: float = 1.0) -> float:
        with self._lock:
            values = self._hashes.setdefault(key, {})
            values[member] = values.get(member, 0.0) + amount
            return values[member]

    def get_hash(self, key: str) -> dict[str, float]:
        with self._lock:
            return dict(self._hashes.get(key, {}))

    def set_hash(self, key: str, values: Mapping[str, float]) -> None:
        with self._lock:
            self._hashes.setdefault(key, {}).update(values)

    def delete_hash(self, key: str, members: Sequence[str] | None = None) -> None:
        with self._lock:
            if members is None:
                self._hashes.pop(key, None)
                return
            values = self._hashes.get(key, {})
            for member in members:
                values.pop(member, None)

    def ewma(self, key: str, member: str, value: float, alpha: float) -> float:
        with self._lock:
            values = self._hashes.setdefault(key, {})
            old = values.get(member)
            values[member] = value if old is None else alpha * value + (1 - alpha) * old
            return values[member]

    def cool_down(self, provider_id: str, seconds: float) -> None:
        with self._lock:
            self._cool_until[provider_id] = time.monotonic() + seconds

    def cooling(self, provider_ids: Sequence[str]) -> set[str]:
        now = time.monotonic()
        with self._lock:
            return {pid for pid in provider_ids if self._cool_until.get(pid, 0.0) > now}

    def clear_cool_down(self, provider_id: str) -> None:
        with self._lock:
            self._cool_until.pop(provider_id, None)

    def record_failure(self, provider_id: str, seq: int | None, base: float, cap: float,
                       retry_after: float | None = None) -> float | None:
        with self._lock:
            seqs = self._hashes.setdefault(FAILSEQ, {})
            if seq is not None and seqs.get(provider_id, 0.0) != seq:
                return None
            seqs[provider_id] = seqs.get(provider_id, 0.0) + 1
            failures = self._hashes.setdefault(FAILURES, {})
            failures[provider_id] = failures.get(provider_id, 0.0) + 1
            seconds = cool_seconds(failures[provider_id], base, cap, retry_after)
            self._cool_until[provider_id] = time.monotonic() + seconds
            return seconds

    def record_success(self, provider_id: str, seq: int | None) -> bool:
        with self._lock:
            failures = self._hashes.setdefault(FAILURES, {})
            if not failures.get(provider_id):
                return False
            if seq is not None and self._hashes.get(FAILSEQ, {}).get(provider_id, 0.0) != seq:
                return False
            failures[provider_id] = 0.0
            self._cool_until.pop(provider_id, None)
            return True

    def health_marks(self, provider_ids: Sequence[str]) -> dict[str, tuple[float, int]]:
        with self._lock:
            failures = self._hashes.get(FAILURES, {})
            seqs = self._hashes.get(FAILSEQ, {})
            return {p: (failures.get(p, 0.0), int(seqs.get(p, 0))) for p in provider_ids}
