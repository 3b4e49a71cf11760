"""``RedisLeases``: the worker's lease store shared through Redis (``leases.LeaseStore``).

Layout (under ``LLM_ROUTER_REDIS_PREFIX``, default ``llm_router:``)::

    lease:<provider>       provider slots: sorted set, lease id -> expiry (ms, Redis clock)
    auth:<key>:leases      API-key concurrency slots, the same shape
    gone:<lease>           tombstone of a lease released late (one TTL)
    q:<model> qx:<model>   the model's fair queue (``waiting``), woken by a provider release
    w:<ticket>             a waiter's wake token
    probe                  written by the outage prober

The domain scripts that grant (``redis_lua.CHOOSE``, ``auth.redis_limits.ADMIT``) grant into the
keys named here (``set_key``, ``tomb_key``, ``queue_keys``); releases and renewals are
``lease_lua.RELEASE`` / ``RENEW``, for every kind at once.

Releases are batched (``Batcher``): when no release is on its way, one is sent at once, by the
caller, with no added delay; releases arriving while one is on its way queue up and go in ONE
``RELEASE`` call next, sent by a background sender (a greenlet under gevent) that drains the
queue while it fills. So a worker has at most one release call in flight, a busy worker pays
one round trip for many releases, and a request never sends more than its own call.

Outages (``redis_link.Fallback``, one per worker, shared with the domain stores built on this
one): a release batch that cannot be sent is delivered as soon as Redis answers again, with
tombstones (never dropped); a renewal that cannot be sent is skipped (the next round re-creates
what Redis lost). Every release also goes to the in-process sets (``memory``), where leases
granted during an outage live.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import redis

from llm_router_api.base import lease_lua
from llm_router_api.base.lb.waiting import TICKET_TTL
from llm_router_api.base.leases import KEY, PROVIDER, Held, LeaseStore, MemoryLeases
from llm_router_api.base.redis_link import PROBE_TTL_MS, Fallback, LeanScript, Settle

log = logging.getLogger("llm_router.redis")

T = TypeVar("T")
#: Where each kind of lease lives (``{}``: the owner); keep them: instances of two versions
#: share one Redis during a rolling deploy.
LAYOUT = {PROVIDER: "lease:{}", KEY: "auth:{}:leases"}
#: How long a tombstone of a lease released late lives (ms): longer than any call can be late.
TOMBSTONE_MS = 120_000
TICKET_TTL_MS = int(TICKET_TTL * 1000)
#: How long ``close`` waits for a release on its way (s).
FLUSH_TIMEOUT = 2.0


def to_ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class Batcher(Generic[T]):
    """Sends items one call at a time, in batches. ``put`` sends at once, in the caller, when
    nothing is on its way; otherwise the item queues. What queued while a call was on its way
    goes in one call next, sent by a background sender, which keeps draining while the queue
    fills: a caller makes at most one call, however busy the worker (under steady load the
    queue never empties, and a caller that drained it would never return). The lock is held
    only to swap the queue (never across a send), so it suits threads and greenlets alike.
    ``send`` must not raise for an outage (it settles what it could not deliver)."""

    def __init__(self, send: Callable[[list[T]], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._queued: list[T] = []
        self._sending = False

    def put(self, item: T) -> None:
        with self._lock:
            self._queued.append(item)
            if self._sending:
                return  # the call on its way is followed by one for this
            self._sending = True
        if self._send_one():
            threading.Thread(target=self._drain, name="lease-releases", daemon=True).start()

    def _send_one(self) -> bool:
        """Send what is queued in one call; True when more queued meanwhile (the sending
        turn is kept for whoever sends it), False when the turn was given up."""
        with self._lock:
            batch, self._queued = self._queued, []
            if not batch:
                self._sending = False
                return False
        try:
            self._send(batch)
        except BaseException:  # a killed greenlet, a bug: the next put sends the batch
            with self._lock:
                self._queued[:0] = batch
                self._sending = False
            raise
        with self._lock:
            if self._queued:
                return True
            self._sending = False
            return False

    def _drain(self) -> None:
        while self._send_one():
            pass

    def flush(self, timeout: float) -> None:
        """Send what is queued, or wait (at most ``timeout``) for the caller sending it."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._sending:
                    if not self._queued:
                        return
                    self._sending = True
                    break
            if time.monotonic() >= deadline:
                log.warning("%d lease releases were still on their way at exit",
                            len(self._queued))
                return
            time.sleep(0.01)
        self._drain()

    def queued(self) -> int:
        with self._lock:
            return len(self._queued)


class RedisLeases(LeaseStore):
    """Leases shared by every worker and instance; per-process sets while Redis is away."""

    def __init__(self, client: redis.Redis, prefix: str = "llm_router:",
                 where: str = "redis") -> None:
        super().__init__()
        self._redis = client
        self.prefix = prefix
        self._memory = MemoryLeases()
        #: The worker's one outage handler: the domain stores built on this one use it too.
        self.fallback = Fallback(where, "shared state (leases, load balancing, key limits)",
                                 self._probe)
        self._release = LeanScript(client, lease_lua.RELEASE)
        self._renew = LeanScript(client, lease_lua.RENEW)
        self._sender: Batcher[tuple[str, Held]] = Batcher(self._send)

    @property
    def memory(self) -> MemoryLeases:
        return self._memory

    def _probe(self) -> None:
        self._redis.set(f"{self.prefix}probe", "1", px=PROBE_TTL_MS)

    # -- layout ----------------------------------------------------------------------------------
    def set_key(self, kind: str, owner: str) -> str:
        return self.prefix + LAYOUT[kind].format(owner)

    def tomb_key(self, lease_id: str) -> str:
        return f"{self.prefix}gone:{lease_id}"

    def queue_keys(self, queue: str) -> list[str]:
        return [f"{self.prefix}q:{queue}", f"{self.prefix}qx:{queue}"]

    @property
    def wake_prefix(self) -> str:
        return f"{self.prefix}w:"

    # -- release -------------------------------------------------------------------------------
    def release(self, lease_id: str, held: Held) -> None:
        self._memory.release(lease_id, held)  # a lease granted during an outage lives there
        self._sender.put((lease_id, held))

    def _send(self, batch: list[tuple[str, Held]]) -> None:
        self.fallback.settle(lambda late: self._release_now(batch, late))

    def _release_now(self, batch: Sequence[tuple[str, Held]], late: bool) -> None:
        keys: list[str] = []
        args: list[Any] = [self.wake_prefix, TICKET_TTL_MS]
        for lease_id, held in batch:
            keys += [self.set_key(held.kind, held.owner), self.tomb_key(lease_id)]
            args += [lease_id, TOMBSTONE_MS if late else 0, 1, 0 if held.wake is None else 1]
            if held.wake is not None:
                keys += self.queue_keys(held.wake)
        self._release(keys=keys, args=args)

    def undo(self, lease_id: str, sets: Sequence[str]) -> Settle:
        """For a grant whose call failed (Redis may run it yet): take ``lease_id`` out of the
        sorted sets ``sets`` (keys) and tombstone it, when Redis answers again."""
        def undo(late: bool) -> None:
            self._release(keys=[*sets, self.tomb_key(lease_id)],
                          args=[self.wake_prefix, TICKET_TTL_MS, lease_id, TOMBSTONE_MS,
                                len(sets), 0])

        return undo

    # -- renewal ---------------------------------------------------------------------------------
    def renew_now(self, leases: Mapping[str, Held], ttl: float) -> None:
        self._memory.renew_now(leases, ttl)
        if not leases:
            return
        keys: list[str] = []
        for lease_id, held in leases.items():
            keys += [self.set_key(held.kind, held.owner), self.tomb_key(lease_id)]
        self.fallback.run(lambda: self._renew(keys=keys, args=[to_ms(ttl), *leases]),
                          lambda: None)

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and this process serves from memory."""
        return self.fallback.down

    def pending(self) -> int:
        return self.fallback.pending()

    def close(self) -> None:
        self._sender.flush(FLUSH_TIMEOUT)
        self.fallback.close()
        self._redis.close()
