"""Waiting for a slot: a fair queue per model, woken when a slot frees (never polled).

A request that finds every slot of its model taken holds a ``Waiter``: the model's queue and a
ticket chosen by the gateway. The store's one routing call (``StateStore.choose_lease``) both
decides and queues: a caller may take a slot only when fewer live tickets are ahead of it than
there are free slots, otherwise its ticket joins the end of the queue (or keeps its place). So
arrivals are served in order, across every worker and instance sharing the store, and a newcomer
never takes the slot a woken waiter is about to take.

Wake-ups: a release wakes the head of its model's queue; a waiter that takes a slot while more
are free wakes the next ones (the baton is passed); a refused caller wakes those ahead of it when
slots are free. A wake is a token (a Redis list popped with ``BLPOP``, an ``Event`` in memory), so
none is lost while the waiter is between two waits. A waiter waits at most ``WAIT_SLICE`` at a
time and then asks again (a lease that expired or a cool-down that ended wakes nobody).

Abandoned places: a ticket lives ``TICKET_TTL`` after the waiter last asked (a waiter asks at
least every ``WAIT_SLICE``), and ``leave`` removes it when the waiter stops waiting (served
elsewhere, timed out, failed); a waiter that leaves holding an unused wake passes it on. A
crashed worker's tickets thus block nobody for longer than ``TICKET_TTL``.

A waiter that excludes providers (a retry after a failure) may sit at the head while only the
providers it excludes have free slots; it takes the next slot freed on its own candidates, which
are all busy and so free soon, and in the worst case its place expires with its deadline.

``Queues`` is the in-process form, kept by the lease store's in-process sets
(``base.leases.MemoryLeases``, whose provider releases wake it) and used by ``MemoryStore``
(under that lock, except for ``wait``, which must not hold it). ``RedisStore`` does the same in
Lua (``redis_lua``; the wake on release is ``base.lease_lua``).
"""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import dataclass, field

#: Seconds a waiter waits at most before it asks again.
WAIT_SLICE = 1.0
#: Seconds a ticket keeps its place after its waiter last asked.
TICKET_TTL = 5.0


def _new_ticket() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Waiter:
    """A place in the queue of ``queue`` (a model name): the ticket is chosen by the gateway."""

    queue: str
    ticket: str = field(default_factory=_new_ticket)


class Queues:
    """Per queue: live tickets in arrival order (ticket -> expiry), and a wake event per ticket."""

    def __init__(self) -> None:
        self._tickets: dict[str, dict[str, float]] = {}
        self._wakes: dict[str, threading.Event] = {}

    def turn(self, waiter: Waiter, free: float, open_: bool, now: float) -> bool:
        """May ``waiter`` take one of ``free`` slots now? If not, it keeps (or, when ``open_``
        — some candidate is not cooling down — takes) its place at the end of the queue."""
        tickets = self._live(waiter.queue, now)
        queued = waiter.ticket in tickets
        ahead = list(tickets).index(waiter.ticket) if queued else len(tickets)
        if ahead < free:
            if queued:
                del tickets[waiter.ticket]
                self._wakes.pop(waiter.ticket, None)
            self.wake_first(waiter.queue, free - 1)  # the baton: slots left for those behind
            return True
        if open_:
            tickets[waiter.ticket] = now + TICKET_TTL  # an existing ticket keeps its place
        self.wake_first(waiter.queue, min(free, ahead))  # those ahead may take the free slots
        return False

    def wake_first(self, queue: str, count: float) -> None:
        """Wake the first ``count`` waiters of ``queue`` (a waking one is not woken twice)."""
        if count <= 0 or math.isinf(count):
            return
        for index, ticket in enumerate(self._tickets.get(queue, {})):
            if index >= count:
                return
            self._wakes.setdefault(ticket, threading.Event()).set()

    def leave(self, waiter: Waiter) -> None:
        """Give up the place; an unused wake goes to the new head."""
        tickets = self._tickets.get(waiter.queue, {})
        tickets.pop(waiter.ticket, None)
        wake = self._wakes.pop(waiter.ticket, None)
        if wake is not None and wake.is_set():
            self.wake_first(waiter.queue, 1)
        if not tickets:
            self._tickets.pop(waiter.queue, None)

    def wake_event(self, waiter: Waiter) -> threading.Event:
        return self._wakes.setdefault(waiter.ticket, threading.Event())

    def _live(self, queue: str, now: float) -> dict[str, float]:
        tickets = self._tickets.setdefault(queue, {})
        for ticket in [t for t, expiry in tickets.items() if expiry <= now]:
            del tickets[ticket]
            self._wakes.pop(ticket, None)
        return tickets


def wait(event: threading.Event, timeout: float) -> bool:
    """Wait (outside any lock) for a wake, at most ``timeout``; consume it. True when woken."""
    woken = event.wait(timeout) if timeout > 0 else event.is_set()
    event.clear()
    return woken
