"""State stores for load balancing: leases, counters and health, in memory or shared.

A lease is one acquired provider slot: a unique id with an expiry. "In flight" means the live
leases of a provider. ``acquire_lease`` is atomic with its capacity check, so ``max_concurrency``
is a hard cap. The leases themselves belong to the worker's one lease store (``store.leases``,
``base.leases``): a store grants into the lease store's sets, and ``release_lease`` /
``renew_leases`` are the lease store's release (idempotent; it wakes the model's queue) and
renewal, so a crashed worker's leases expire by themselves.

``choose_lease`` is the one-step routing decision of the built-in strategies: among the given
candidates it skips those cooling down or at their cap, applies a pick rule (``picking``) to the
rest and leases the pick, all atomically (one Redis round trip). With a ``Waiter`` it also
keeps the model's queue fair (``waiting``): a caller takes a slot only when its turn has come,
else its ticket waits in line; ``wait_turn`` sleeps until a release wakes it, ``leave_queue``
gives the place up.

``choose_cached`` is the same step for ``cache_aware`` (``cache_scoring``): it also reads each
candidate's prefix match and load signals and records the prompt's blocks and the session on the
chosen provider. ``put_signals`` / ``signals`` keep each provider's last load signals with their
age; ``hold_lock`` elects one load poller.

``MemoryStore`` serves one process (thread-safe; it decides under its lease store's lock, in its
sets). ``RedisStore`` (``redis_store``) shares the same operations across workers and instances.

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

import math
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence

from llm_router_api.base.lb.cache_scoring import CacheParams, Decision, View
from llm_router_api.base.lb.cache_tables import CacheTables
from llm_router_api.base.lb.hint import RoutingHint, RoutingOutcome
from llm_router_api.base.lb.picking import Candidate, pick
from llm_router_api.base.lb.waiting import Waiter, wait
from llm_router_api.base.leases import PROVIDER, Held, LeaseStore, LeaseTable, MemoryLeases

FAILURES = "health:failures"
FAILSEQ = "health:failseq"
#: How often a store without queues is asked again while a request waits for a slot.
POLL_INTERVAL = 0.05

#: ``(grant, what was decided)`` from ``choose_cached``.
Cached = tuple["Grant", RoutingOutcome]
#: ``provider id -> (signal values, age in seconds)``.
SignalAges = dict[str, tuple[dict[str, float], float]]


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


def outcome(decision: Decision, views: list[View], total_blocks: int) -> RoutingOutcome:
    chosen = views[decision.index]
    return RoutingOutcome(
        chosen.id, chosen.matched / total_blocks if total_blocks else 0.0, decision.affinity,
        decision.saturation_skips, decision.loads,
        {v.id: v.age for v in views if v.age is not None})


class StateStore(ABC):
    """What strategies, the chooser and the health tracker may keep."""

    #: The worker's lease store: where this store grants, and what releases and renews.
    leases: LeaseStore

    @abstractmethod
    def acquire_lease(self, provider_id: str, cap: int | None, ttl: float) -> str | None:
        """A new lease on ``provider_id`` unless ``cap`` live leases exist; else ``None``."""

    @abstractmethod
    def choose_lease(self, rule: str, state_key: str, candidates: Sequence[Candidate],
                     ttl: float | None, waiter: Waiter | None = None) -> Grant | None:
        """Pick among ``candidates`` by ``rule`` and lease the pick, atomically.

        Candidates cooling down or holding ``cap`` live leases (one when half-open) are
        skipped; the rule's state lives in the hash ``state_key``. Returns
        ``(provider_id, lease_id)`` with the pick's health marks, or ``None`` when no candidate
        is available. With ``ttl=None`` nothing is leased (lease id ``None``). With a
        ``waiter``, only when its turn in the queue has come; else it keeps its place.
        """

    def release_lease(self, provider_id: str, lease_id: str, queue: str | None = None) -> None:
        """Drop the lease (no error if it expired or was already released); wake the head of
        ``queue`` (the lease's model), if any. The lease store's one release path."""
        self.leases.release(lease_id, Held(PROVIDER, provider_id, queue))

    def wait_turn(self, waiter: Waiter, timeout: float) -> bool:
        """Sleep until ``waiter`` is woken (True) or ``timeout`` passes (False). Default: a
        short sleep (a store without queues is polled)."""
        time.sleep(max(0.0, min(timeout, POLL_INTERVAL)))
        return False

    def leave_queue(self, waiter: Waiter) -> None:  # noqa: B027 - no queue by default
        """Give the waiter's place up (it stopped waiting, for whatever reason)."""

    def renew_leases(self, leases: Mapping[str, str], ttl: float) -> None:
        """Push the expiry of each ``lease_id -> provider_id`` to now + ``ttl``; a shared store
        re-creates leases it lost (restart, ``FLUSHALL``, eviction): they are still in use.
        (The worker's renewal is ``leases.renew``: every held lease of every kind.)"""
        self.leases.renew_now({lease_id: Held(PROVIDER, provider_id)
                               for lease_id, provider_id in leases.items()}, ttl)

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

    # -- cache_aware ---------------------------------------------------------------------------
    @abstractmethod
    def choose_cached(self, state_key: str, candidates: Sequence[Candidate], hint: RoutingHint,
                      params: CacheParams, ttl: float | None) -> Cached | None:
        """``cache_aware``'s pick (``cache_scoring.decide``) and lease, atomically; records the
        hint's blocks on the chosen provider and the session's provider. ``None`` when no
        candidate is available."""

    @abstractmethod
    def put_signals(self, provider_id: str, values: Mapping[str, float]) -> None:
        """The provider's load signals, taken now (replacing the last ones)."""

    @abstractmethod
    def signals(self, provider_ids: Sequence[str]) -> SignalAges:
        """The last load signals of those providers that have some, with their age (s)."""

    @abstractmethod
    def hold_lock(self, name: str, token: str, seconds: float) -> bool:
        """Take or keep the lock ``name`` for ``token`` for ``seconds``; False when another
        holder has it."""

    @abstractmethod
    def prefix_entries(self, provider_id: str) -> int:
        """How many prompt-block hashes the provider's prefix table holds."""

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
    """One process's state. Thread-safe (under its lease store's lock); not shared between
    workers. ``leases``: the worker's lease store (a shared store passes its own, whose
    in-process sets this one then decides in)."""

    def __init__(self, leases: LeaseStore | None = None) -> None:
        self.leases = leases if leases is not None else MemoryLeases()
        self._sets = self.leases.memory
        self._lock = self._sets.lock
        self._queues = self._sets.queues
        self._hashes: dict[str, dict[str, float]] = {}
        self._cool_until: dict[str, float] = {}
        self._cache = CacheTables()

    def _table(self, provider_id: str) -> LeaseTable:
        return self._sets.table(PROVIDER, provider_id)

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

    def _available(self, candidates: Sequence[Candidate],
                   now: float) -> tuple[list[Candidate], dict[str, int], float]:
        """Candidates not cooling down and below their cap (one when half-open), their live
        leases, and the free slots in all (locked)."""
        in_flight: dict[str, int] = {}
        available: list[Candidate] = []
        free = 0.0
        for candidate in candidates:
            if self._cool_until.get(candidate.id, 0.0) > now:
                continue
            in_flight[candidate.id] = self._table(candidate.id).live(now)
            cap = self._cap(candidate.id, candidate.cap)
            if cap is None or in_flight[candidate.id] < cap:
                available.append(candidate)
                free += math.inf if cap is None else cap - in_flight[candidate.id]
        return available, in_flight, free

    def choose_lease(self, rule: str, state_key: str, candidates: Sequence[Candidate],
                     ttl: float | None, waiter: Waiter | None = None) -> Grant | None:
        now = time.monotonic()
        with self._lock:
            available, in_flight, free = self._available(candidates, now)
            open_ = len(in_flight) > 0  # some candidate is not cooling down: worth waiting
            if waiter is not None and ttl is not None \
                    and not self._queues.turn(waiter, free, open_, now):
                return None
            if not available:
                return None
            state = self._hashes.setdefault(state_key, {})
            index, updates = pick(rule, available, in_flight, state)
            state.update(updates)
            chosen = available[index].id
            return self._grant(chosen, ttl, now)

    def _grant(self, chosen: str, ttl: float | None, now: float) -> Grant:
        """Lease ``chosen`` (locked) with its health marks."""
        seq = int(self._hashes.get(FAILSEQ, {}).get(chosen, 0))
        trial = self._hashes.get(FAILURES, {}).get(chosen, 0.0) > 0
        if ttl is None:
            return Grant(chosen, None, seq, trial)
        lease_id = new_lease_id()
        self._table(chosen).add(lease_id, now + ttl)
        return Grant(chosen, lease_id, seq, trial)

    def choose_cached(self, state_key: str, candidates: Sequence[Candidate], hint: RoutingHint,
                      params: CacheParams, ttl: float | None) -> Cached | None:
        now = time.monotonic()
        with self._lock:
            available, in_flight, _ = self._available(candidates, now)
            if not available:
                return None
            decision, views = self._cache.decide(
                f"{state_key}:{hint.session}", candidates, available, in_flight, hint, params,
                self._hashes.setdefault(state_key, {}), now)
            chosen = views[decision.index].id
            return self._grant(chosen, ttl, now), outcome(decision, views,
                                                          len(hint.hashes))

    def put_signals(self, provider_id: str, values: Mapping[str, float]) -> None:
        with self._lock:
            self._cache.put_signals(provider_id, values, time.monotonic())

    def signals(self, provider_ids: Sequence[str]) -> SignalAges:
        with self._lock:
            return self._cache.signals(provider_ids, time.monotonic())

    def hold_lock(self, name: str, token: str, seconds: float) -> bool:
        return True  # one process: whoever asks holds it

    def prefix_entries(self, provider_id: str) -> int:
        with self._lock:
            return self._cache.prefix_size(provider_id)

    def wait_turn(self, waiter: Waiter, timeout: float) -> bool:
        with self._lock:
            event = self._queues.wake_event(waiter)
        return wait(event, timeout)

    def leave_queue(self, waiter: Waiter) -> None:
        with self._lock:
            self._queues.leave(waiter)

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
