"""Leases, wherever they live: the in-process table, and a worker's book of its live leases.

A lease is a slot held by one request: an id chosen by the gateway and an expiry. The same
shape serves provider slots (``base.lb``) and API-key concurrency (``auth.limits``).

``LeaseTable`` is one set of leases in memory (not locked: its owner locks). Counting live
leases costs O(log n) amortised whatever the traffic: expiries sit in a heap and are dropped as
they pass; a renewal pushes a new heap entry and the old one is skipped when it surfaces.

``LeaseBook`` is what one worker holds: lease id -> where the lease lives. ``renew`` hands a
snapshot to the store; a lease released while that renewal was on its way is released once more
afterwards, because a renewal re-creates leases the store lost (``FLUSHALL``, restart, eviction)
and must never bring a released one back.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class LeaseTable:
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
