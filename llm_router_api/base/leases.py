"""Leases: every slot a worker holds, in one store (``LeaseStore``) per worker.

A lease is a slot held by one request: an id chosen by the gateway and an expiry. Two kinds
share one shape: provider slots (``PROVIDER``, granted by ``base.lb``'s routing decision, whose
release wakes the model's wait queue) and API-key concurrency slots (``KEY``, granted by
``auth.limits``' admission). ``Held`` says where a lease lives (its kind and owner: the set it
is in) and what its release must also do (``wake``: the queue of that model).

Lifecycle of one lease::

    lease_id = <granted into the set of Held(kind, owner) by a domain store, atomically with
                its decision (a cap, a pick rule, rate limits)>
    leases.hold(lease_id, held)        # this worker holds it: renewed from now on
    leases.take(lease_id) -> held      # exactly once (None after); then
    leases.release(lease_id, held)     # the one release path (idempotent in the sets)
    leases.drop(lease_id)              # take + release

``LeaseStore.renew(ttl)`` is the worker's one renewal (``core.background.Maintenance``): one call
pushes every held lease's expiry, of both kinds, and re-creates leases the store lost
(``FLUSHALL``, restart, eviction). A lease released while that renewal was on its way is
released once more afterwards (``LeaseBook``), so a renewal never brings a released one back.

``MemoryLeases`` is the in-process store: one lock, one ``LeaseTable`` per set, and the models'
wait queues (``waiting.Queues``) a release wakes. The domain stores' memory forms
(``MemoryStore``, ``MemoryLimiter``) decide under its lock, in its tables. ``RedisLeases``
(``redis_leases``) is the shared one; it keeps a ``MemoryLeases`` as its outage fallback.

To add a lease kind: a constant here, a key pattern in ``redis_leases.LAYOUT``, a grant in the
domain store that owns the decision (into ``memory.table(kind, owner)`` and
``RedisLeases.set_key(kind, owner)``), and ``hold`` it.
"""

from __future__ import annotations

import heapq
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from llm_router_api.base.lb.waiting import Queues

V = TypeVar("V")

#: Provider slots (owner: provider id; ``max_concurrency``).
PROVIDER = "provider"
#: API-key concurrency slots (owner: key id; ``max_concurrent``).
KEY = "key"


@dataclass(frozen=True, slots=True)
class Held:
    """Where a lease lives (``kind``, ``owner``: its set) and what its release also does:
    ``wake`` the head of that model's wait queue."""

    kind: str
    owner: str
    wake: str | None = None


class LeaseTable:
    """One set of leases in memory (not locked: its owner locks). Counting live leases costs
    O(log n) amortised: expiries sit in a heap and are dropped as they pass; a renewal pushes a
    new heap entry and the old one is skipped when it surfaces."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def live(self, now: float) -> int:
        """Drop what expired by ``now``; the number of live leases."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            expiry, lease_id = heapq.heappop(heap)
            if self._expiry.get(lease_id) == expiry:
                del self._expiry[lease_id]
        return len(self._expiry)

    def add(self, lease_id: str, expiry: float) -> None:
        self._expiry[lease_id] = expiry
        heapq.heappush(self._heap, (expiry, lease_id))

    def remove(self, lease_id: str) -> bool:
        return self._expiry.pop(lease_id, None) is not None

    def renew(self, lease_id: str, expiry: float, restore: bool = False) -> None:
        """Move the expiry of a live lease (or of any lease with ``restore``)."""
        if restore or lease_id in self._expiry:
            self.add(lease_id, expiry)

    def __contains__(self, lease_id: object) -> bool:
        return lease_id in self._expiry


class LeaseBook(Generic[V]):
    """One worker's live leases: lease id -> what the store needs to find it (thread-safe)."""

    def __init__(self) -> None:
        self._live: dict[str, V] = {}
        self._lock = threading.Lock()
        self._renewing = threading.Lock()
        self._raced: set[str] | None = None

    def add(self, lease_id: str, value: V) -> None:
        with self._lock:
            self._live[lease_id] = value

    def pop(self, lease_id: str) -> V | None:
        """Take the lease out (``None`` when it was already out: release exactly once)."""
        with self._lock:
            value = self._live.pop(lease_id, None)
            if value is not None and self._raced is not None:
                self._raced.add(lease_id)
            return value

    def renew(self, send: Callable[[dict[str, V]], None],
              release_again: Callable[[str, V], None]) -> None:
        with self._renewing:
            with self._lock:
                live = dict(self._live)
                self._raced = set()
            try:
                if live:
                    send(live)
            finally:
                with self._lock:
                    raced, self._raced = self._raced, None
            for lease_id in raced & live.keys():
                release_again(lease_id, live[lease_id])

    def snapshot(self) -> dict[str, V]:
        with self._lock:
            return dict(self._live)

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)


class LeaseStore(ABC):
    """Every lease one worker holds, of every kind: booked, released, renewed here."""

    def __init__(self) -> None:
        self._book: LeaseBook[Held] = LeaseBook()

    @property
    @abstractmethod
    def memory(self) -> MemoryLeases:
        """The in-process sets: where memory-side decisions grant (under its ``lock``)."""

    @abstractmethod
    def release(self, lease_id: str, held: Held) -> None:
        """Free the slot in its set and do what its release also does (``wake``). Idempotent
        in the sets; never dropped (a shared store delivers it when it can)."""

    @abstractmethod
    def renew_now(self, leases: Mapping[str, Held], ttl: float) -> None:
        """Push each lease's expiry to now + ``ttl``; a lease missing from its set is put back
        (it is in use) unless it was released late (tombstoned)."""

    def hold(self, lease_id: str, held: Held) -> None:
        """This worker holds the lease: it is renewed until it is taken."""
        self._book.add(lease_id, held)

    def take(self, lease_id: str) -> Held | None:
        """Take the lease out of the book: its ``Held`` the first time, ``None`` after."""
        return self._book.pop(lease_id)

    def drop(self, lease_id: str) -> bool:
        """Release a held lease exactly once; False when it was already released."""
        held = self._book.pop(lease_id)
        if held is None:
            return False
        self.release(lease_id, held)
        return True

    def renew(self, ttl: float) -> None:
        """The worker's one renewal: every held lease, of every kind, in one ``renew_now``."""
        self._book.renew(lambda live: self.renew_now(live, ttl), self.release)

    def count(self, kind: str | None = None) -> int:
        """Leases held (of ``kind``)."""
        if kind is None:
            return len(self._book)
        return sum(held.kind == kind for held in self._book.snapshot().values())

    def pending(self) -> int:
        """Releases (and abandoned grants) waiting for the shared store to answer again."""
        return 0

    def close(self) -> None:  # noqa: B027 - nothing to close in memory
        """Send what is still queued, then release connections (at exit)."""


class MemoryLeases(LeaseStore):
    """One process's lease sets (thread-safe): the store itself, or a shared store's fallback."""

    def __init__(self) -> None:
        super().__init__()
        #: Held by the domain stores' memory forms while they decide and grant.
        self.lock = threading.Lock()
        #: The models' wait queues (``waiting``): a provider lease's release wakes its head.
        self.queues = Queues()
        self._tables: dict[tuple[str, str], LeaseTable] = {}

    @property
    def memory(self) -> MemoryLeases:
        return self

    def table(self, kind: str, owner: str) -> LeaseTable:
        """The set of ``owner``'s leases of ``kind`` (the caller holds ``lock``)."""
        table = self._tables.get((kind, owner))
        if table is None:
            table = self._tables[(kind, owner)] = LeaseTable()
        return table

    def release(self, lease_id: str, held: Held) -> None:
        with self.lock:
            self.table(held.kind, held.owner).remove(lease_id)
            if held.wake is not None:
                self.queues.wake_first(held.wake, 1)

    def renew_now(self, leases: Mapping[str, Held], ttl: float) -> None:
        expiry = time.monotonic() + ttl
        with self.lock:
            for lease_id, held in leases.items():
                self.table(held.kind, held.owner).renew(lease_id, expiry, restore=True)
