"""``RedisStore``: load-balancing state shared by every worker and instance through Redis.

Layout (under ``LLM_ROUTER_REDIS_PREFIX``, default ``llm_router:``), besides the lease store's
(``base.redis_leases``: ``lease:<provider>`` sets, ``gone:<lease>`` tombstones, the fair queues
``q:``/``qx:``/``w:`` and ``probe``), which this store grants into::

    cool:<provider>    string with a TTL: present while the provider cools down
    h:<key>            hash of counters (strategy state, health failures and failure sequence
                       numbers, latencies, weights)
    log:<key>          list of short text entries, newest last, trimmed (recent requests)
    pfx:<provider>     sorted set: prompt-block hash -> when last sent (``cache_aware``)
    sig:<provider>     hash: the provider's last load signals and when they were taken
    aff:<key>:<sess>   string with a TTL: the provider that served a session last
    lock:<name>        string with a TTL: the holder of a lock (the load poller)

Every multi-step operation is one Lua script (``redis_lua``), so caps and pick rules hold across
processes. Nothing is deleted at startup: one instance's restart never wipes another's state.

Redis outage (``base.redis_link.Fallback``, the lease store's: one per worker): every Redis error
is an outage; sockets time out quickly, never longer. The store then logs one warning and serves
from a per-process ``MemoryStore`` (on the lease store's in-process sets: requests keep being
served; caps and counters are then per process), and a prober brings Redis back as soon as it
takes writes again. Lease ids are chosen here, so nothing is left to chance: a grant whose call
failed (Redis may still run it) is released when Redis answers again, tombstoned. Releases and
renewals are the lease store's (``base.redis_leases``): a release that could not be sent is
delivered when Redis answers again; renewals re-create leases Redis lost, including those
granted from memory during an outage, so in-flight requests count again in Redis within one
renewal round.

Waiting (``waiting``): the routing script queues a caller whose turn has not come; the waiter
then blocks in ``BLPOP`` on its own wake list (on a second connection pool whose socket timeout
outlasts one ``WAIT_SLICE``; under gevent the block is cooperative), and a release pushes the
head's token. While Redis is down, waiting uses the in-process queue like everything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis

from llm_router_api.base.lb import redis_cache_lua, redis_lua
from llm_router_api.base.lb.cache_scoring import (
    AFFINITY_SLACK,
    IMBALANCE_FACTOR,
    SOFT_SLOTS,
    CacheParams,
)
from llm_router_api.base.lb.hint import RoutingHint, RoutingOutcome
from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.lb.state import (
    FAILSEQ,
    FAILURES,
    Cached,
    Grant,
    MemoryStore,
    SignalAges,
    StateStore,
    new_lease_id,
)
from llm_router_api.base.lb.waiting import WAIT_SLICE, Waiter
from llm_router_api.base.leases import PROVIDER
from llm_router_api.base.redis_leases import TICKET_TTL_MS, RedisLeases, to_ms
from llm_router_api.base.redis_link import (
    SOCKET_TIMEOUT,
    LeanScript,
    blocking_twin,
    redis_address,
    redis_client,
    warn_if_keys_can_be_evicted,
)
from llm_router_api.settings import Settings

log = logging.getLogger("llm_router.redis")

T = TypeVar("T")
#: How long a provider's last load signals are kept (ms); they are stale long before.
SIGNALS_KEEP_MS = 600_000
NO_SESSION = "aff:-"
#: The waiting pool's socket timeout: one ``BLPOP`` of a ``WAIT_SLICE``, and a reply's time.
WAIT_SOCKET_TIMEOUT = WAIT_SLICE + SOCKET_TIMEOUT


class RedisStore(StateStore):
    """``leases``: the worker's lease store (by default one on ``client`` and ``prefix``); its
    outage handler is this store's too."""

    def __init__(self, client: redis.Redis, prefix: str = "llm_router:",
                 where: str = "redis", waiting: redis.Redis | None = None,
                 leases: RedisLeases | None = None) -> None:
        self._redis = client
        self._waiting = waiting if waiting is not None else blocking_twin(client,
                                                                          WAIT_SOCKET_TIMEOUT)
        self._prefix = prefix
        self._where = where
        self.leases: RedisLeases = (leases if leases is not None
                                    else RedisLeases(client, prefix, where))
        self._memory = MemoryStore(self.leases)
        self._fallback = self.leases.fallback
        self._scripts = {name: LeanScript(client, getattr(redis_lua, name))
                         for name in ("ACQUIRE", "IN_FLIGHT", "EWMA", "CHOOSE", "FAIL",
                                      "SUCCEED", "LEAVE")}
        self._scripts.update({name: LeanScript(client, getattr(redis_cache_lua, name))
                              for name in ("CHOOSE_CACHED", "PUT_SIGNALS", "SIGNALS",
                                           "HOLD_LOCK")})

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        client, where = redis_client(settings), redis_address(settings)
        warn_if_keys_can_be_evicted(client, where)
        return cls(client, settings.redis_prefix, where,
                   redis_client(settings, socket_timeout=WAIT_SOCKET_TIMEOUT))

    # -- outage handling ---------------------------------------------------------------------
    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and this process serves from memory."""
        return self._fallback.down

    def _run(self, shared: Callable[[], T], local: Callable[[], T],
             abandon: Callable[[bool], Any] | None = None) -> T:
        return self._fallback.run(shared, local, abandon)

    def pending_deliveries(self) -> int:
        """Releases (and abandoned grants) waiting for Redis to answer again."""
        return self._fallback.pending()

    # -- keys ------------------------------------------------------------------------------------
    def _lease_key(self, provider_id: str) -> str:
        return self.leases.set_key(PROVIDER, provider_id)

    def _cool_key(self, provider_id: str) -> str:
        return f"{self._prefix}cool:{provider_id}"

    def _hash_key(self, key: str) -> str:
        return f"{self._prefix}h:{key}"

    def _tomb_key(self, lease_id: str) -> str:
        return self.leases.tomb_key(lease_id)

    def _queue_keys(self, queue: str) -> list[str]:
        return self.leases.queue_keys(queue)

    @property
    def _wake_prefix(self) -> str:
        return self.leases.wake_prefix

    # -- leases ----------------------------------------------------------------------------------
    def acquire_lease(self, provider_id: str, cap: int | None, ttl: float) -> str | None:
        lease_id = new_lease_id()

        def shared() -> str | None:
            granted = self._scripts["ACQUIRE"](
                keys=[self._lease_key(provider_id), self._tomb_key(lease_id),
                      self._hash_key(FAILURES)],
                args=[-1 if cap is None else cap, to_ms(ttl), lease_id, provider_id])
            return lease_id if granted else None

        return self._run(shared, lambda: self._memory.acquire_lease(provider_id, cap, ttl),
                         self._undo(lease_id, [provider_id], None))

    def choose_lease(self, rule: str, state_key: str, candidates: Sequence[Candidate],
                     ttl: float | None, waiter: Waiter | None = None) -> Grant | None:
        lease_id = new_lease_id()
        ids = [c.id for c in candidates]
        keys = ([self._hash_key(state_key)] + [self._lease_key(i) for i in ids]
                + [self._cool_key(i) for i in ids] + [self._tomb_key(lease_id),
                                                      self._hash_key(FAILURES),
                                                      self._hash_key(FAILSEQ)]
                + self._queue_keys(waiter.queue if waiter else state_key))
        args: list[Any] = [rule, -1 if ttl is None else to_ms(ttl), lease_id, len(candidates)]
        for c in candidates:
            args += [c.id, -1 if c.cap is None else c.cap, repr(float(c.weight))]
        args += [waiter.ticket if waiter else "", TICKET_TTL_MS, self._wake_prefix]

        def shared() -> Grant | None:
            answer = self._scripts["CHOOSE"](keys=keys, args=args)
            if not answer:
                return None
            return Grant(str(answer[0]), str(answer[1]) or None, int(answer[2]),
                         bool(int(answer[3])))

        return self._run(shared, lambda: self._memory.choose_lease(rule, state_key,
                                                                   candidates, ttl, waiter),
                         None if ttl is None else self._undo(lease_id, ids, waiter))

    def _undo(self, lease_id: str, provider_ids: Sequence[str],
              waiter: Waiter | None) -> Callable[[bool], Any]:
        """Release a grant whose call failed: Redis may run it yet (a stalled script). Its
        ticket goes too: a place in line nobody waits in would hold up those behind it."""
        def undo(late: bool) -> None:
            self.leases.undo(lease_id, [self._lease_key(p) for p in provider_ids])(late)
            if waiter is not None:
                self._leave(waiter)

        return undo

    # -- waiting ---------------------------------------------------------------------------------
    def wait_turn(self, waiter: Waiter, timeout: float) -> bool:
        """Block until a release (or a waiter before us) wakes us, at most ``timeout`` (and one
        ``WAIT_SLICE``). True when woken."""
        timeout = min(timeout, WAIT_SLICE)
        if timeout <= 0:
            return False
        return self._run(
            lambda: self._waiting.blpop([self._wake_prefix + waiter.ticket], timeout) is not None,
            lambda: self._memory.wait_turn(waiter, timeout))

    def leave_queue(self, waiter: Waiter) -> None:
        self._memory.leave_queue(waiter)
        self._fallback.settle(lambda late: self._leave(waiter))

    def _leave(self, waiter: Waiter) -> None:
        self._scripts["LEAVE"](keys=self._queue_keys(waiter.queue),
                               args=[waiter.ticket, self._wake_prefix, TICKET_TTL_MS])

    def in_flight(self, provider_ids: Sequence[str]) -> dict[str, int]:
        def shared() -> dict[str, int]:
            counts = self._scripts["IN_FLIGHT"](keys=[self._lease_key(p) for p in provider_ids])
            return {p: int(n) for p, n in zip(provider_ids, counts, strict=True)}

        return self._run(shared, lambda: self._memory.in_flight(provider_ids))

    # -- counters --------------------------------------------------------------------------------
    def incr(self, key: str, member: str, amount: float = 1.0) -> float:
        return self._run(
            lambda: float(self._redis.hincrbyfloat(self._hash_key(key), member, amount)),
            lambda: self._memory.incr(key, member, amount))

    def get_hash(self, key: str) -> dict[str, float]:
        def shared() -> dict[str, float]:
            raw: dict[str, str] = self._redis.hgetall(self._hash_key(key))  # type: ignore[assignment]
            return {k: float(v) for k, v in raw.items()}

        return self._run(shared, lambda: self._memory.get_hash(key))

    def set_hash(self, key: str, values: Mapping[str, float]) -> None:
        if not values:
            return
        mapping: dict[Any, Any] = {k: repr(float(v)) for k, v in values.items()}
        self._run(lambda: self._redis.hset(self._hash_key(key), mapping=mapping),
                  lambda: self._memory.set_hash(key, values))

    def delete_hash(self, key: str, members: Sequence[str] | None = None) -> None:
        def shared() -> Any:
            if members is None:
                return self._redis.delete(self._hash_key(key))
            return self._redis.hdel(self._hash_key(key), *members) if members else 0

        self._run(shared, lambda: self._memory.delete_hash(key, members))

    def ewma(self, key: str, member: str, value: float, alpha: float) -> float:
        return self._run(
            lambda: float(self._scripts["EWMA"](keys=[self._hash_key(key)],
                                                args=[member, repr(value), repr(alpha)])),
            lambda: self._memory.ewma(key, member, value, alpha))

    # -- health ----------------------------------------------------------------------------------
    def cool_down(self, provider_id: str, seconds: float) -> None:
        self._memory.cool_down(provider_id, seconds)  # also true for this process if Redis goes
        self._run(lambda: self._redis.set(self._cool_key(provider_id), "1", px=to_ms(seconds)),
                  lambda: None)

    def cooling(self, provider_ids: Sequence[str]) -> set[str]:
        if not provider_ids:
            return set()

        def shared() -> set[str]:
            flags = self._redis.mget([self._cool_key(p) for p in provider_ids])
            return {p for p, flag in zip(provider_ids, flags, strict=True) if flag}

        return self._run(shared, lambda: self._memory.cooling(provider_ids))

    def clear_cool_down(self, provider_id: str) -> None:
        self._memory.clear_cool_down(provider_id)
        self._run(lambda: self._redis.delete(self._cool_key(provider_id)), lambda: None)

    def record_failure(self, provider_id: str, seq: int | None, base: float, cap: float,
                       retry_after: float | None = None) -> float | None:
        keys = [self._hash_key(FAILURES), self._hash_key(FAILSEQ), self._cool_key(provider_id)]
        args: list[Any] = [provider_id, -1 if seq is None else seq, to_ms(base), to_ms(cap),
                -1 if not retry_after else to_ms(retry_after)]

        def shared() -> float | None:
            ms = int(self._scripts["FAIL"](keys=keys, args=args))
            if ms < 0:
                return None
            self._memory.cool_down(provider_id, ms / 1000)  # also true here if Redis goes
            return ms / 1000

        return self._run(shared, lambda: self._memory.record_failure(provider_id, seq, base,
                                                                     cap, retry_after))

    def record_success(self, provider_id: str, seq: int | None) -> bool:
        keys = [self._hash_key(FAILURES), self._hash_key(FAILSEQ), self._cool_key(provider_id)]

        def shared() -> bool:
            reset = bool(self._scripts["SUCCEED"](keys=keys,
                                                   args=[provider_id, -1 if seq is None else seq]))
            if reset:
                self._memory.clear_cool_down(provider_id)
            return reset

        return self._run(shared, lambda: self._memory.record_success(provider_id, seq))

    def health_marks(self, provider_ids: Sequence[str]) -> dict[str, tuple[float, int]]:
        if not provider_ids:
            return {}

        def shared() -> dict[str, tuple[float, int]]:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hmget(self._hash_key(FAILURES), list(provider_ids))
            pipe.hmget(self._hash_key(FAILSEQ), list(provider_ids))
            failures, seqs = pipe.execute()
            return {p: (float(f or 0), int(q or 0))
                    for p, f, q in zip(provider_ids, failures, seqs, strict=True)}

        return self._run(shared, lambda: self._memory.health_marks(provider_ids))

    # -- cache_aware -------------------------------------------------------------------------
    def choose_cached(self, state_key: str, candidates: Sequence[Candidate], hint: RoutingHint,
                      params: CacheParams, ttl: float | None) -> Cached | None:
        lease_id = new_lease_id()
        ids = [c.id for c in candidates]
        session = (f"{self._prefix}aff:{state_key}:{hint.session}" if hint.session
                   else f"{self._prefix}{NO_SESSION}")
        keys = [self._hash_key(state_key), session]
        for i in ids:
            keys += [self._lease_key(i), self._cool_key(i), f"{self._prefix}pfx:{i}",
                     self._signals_key(i)]
        keys += [self._tomb_key(lease_id), self._hash_key(FAILURES), self._hash_key(FAILSEQ)]
        args: list[Any] = [
            -1 if ttl is None else to_ms(ttl), lease_id, len(ids), len(hint.hashes),
            repr(params.prefix_weight), repr(params.load_weight),
            repr(params.saturation_waiting), repr(params.saturation_kv),
            to_ms(params.max_signal_age), repr(params.affinity_bound), repr(AFFINITY_SLACK),
            params.prefix_entries, to_ms(params.prefix_ttl), 1 if hint.session else 0,
            SOFT_SLOTS, IMBALANCE_FACTOR]
        for c in candidates:
            args += [c.id, -1 if c.cap is None else c.cap]
        args += hint.hashes

        def shared() -> Cached | None:
            answer = self._scripts["CHOOSE_CACHED"](keys=keys, args=args)
            return None if not answer else _cached(answer, len(hint.hashes))

        return self._run(shared, lambda: self._memory.choose_cached(state_key, candidates, hint,
                                                                    params, ttl),
                         None if ttl is None else self._undo(lease_id, ids, None))

    def _signals_key(self, provider_id: str) -> str:
        return f"{self._prefix}sig:{provider_id}"

    def put_signals(self, provider_id: str, values: Mapping[str, float]) -> None:
        args: list[Any] = [SIGNALS_KEEP_MS]
        for name, value in values.items():
            args += [name, repr(float(value))]
        self._memory.put_signals(provider_id, values)
        self._run(lambda: self._scripts["PUT_SIGNALS"](keys=[self._signals_key(provider_id)],
                                                       args=args),
                  lambda: None)

    def signals(self, provider_ids: Sequence[str]) -> SignalAges:
        if not provider_ids:
            return {}

        def shared() -> SignalAges:
            raw = self._scripts["SIGNALS"](keys=[self._signals_key(p) for p in provider_ids])
            found: SignalAges = {}
            for index, provider_id in enumerate(provider_ids):
                age, fields = float(raw[2 * index]), raw[2 * index + 1]
                if age >= 0:
                    found[provider_id] = ({str(fields[i]): float(fields[i + 1])
                                           for i in range(0, len(fields), 2)}, age / 1000)
            return found

        return self._run(shared, lambda: self._memory.signals(provider_ids))

    def hold_lock(self, name: str, token: str, seconds: float) -> bool:
        return bool(self._run(
            lambda: self._scripts["HOLD_LOCK"](keys=[f"{self._prefix}lock:{name}"],
                                               args=[token, to_ms(seconds)]),
            lambda: 1))  # Redis is out: every instance polls for itself meanwhile

    def prefix_entries(self, provider_id: str) -> int:
        return self._run(lambda: int(self._redis.zcard(f"{self._prefix}pfx:{provider_id}")),
                         lambda: self._memory.prefix_entries(provider_id))

    # -- bounded logs ----------------------------------------------------------------------------
    def _log_key(self, key: str) -> str:
        return f"{self._prefix}log:{key}"

    def push_log(self, key: str, entries: Sequence[str], keep: int) -> None:
        if not entries:
            return

        def shared() -> Any:
            pipe = self._redis.pipeline(transaction=False)
            pipe.rpush(self._log_key(key), *entries)
            pipe.ltrim(self._log_key(key), -keep, -1)
            return pipe.execute()

        self._run(shared, lambda: self._memory.push_log(key, entries, keep))

    def read_log(self, key: str) -> list[str]:
        def shared() -> list[str]:
            return [str(e) for e in self._redis.lrange(self._log_key(key), 0, -1)]

        return self._run(shared, lambda: self._memory.read_log(key))

    def close(self) -> None:
        self.leases.close()  # sends the releases still on their way first
        self._redis.close()
        self._waiting.close()


def _cached(answer: list[Any], total_blocks: int) -> Cached:
    """``CHOOSE_CACHED``'s answer as ``(grant, outcome)``."""
    chosen, lease_id, matched, affinity, skips, seq, trial = answer[:7]
    loads: dict[str, float] = {}
    ages: dict[str, float] = {}
    rest = answer[7:]
    for i in range(0, len(rest), 3):
        provider_id = str(rest[i])
        loads[provider_id] = float(rest[i + 1])
        if float(rest[i + 2]) >= 0:
            ages[provider_id] = float(rest[i + 2]) / 1000
    match = int(matched) / total_blocks if total_blocks else 0.0
    grant = Grant(str(chosen), str(lease_id) or None, int(seq), bool(int(trial)))
    return grant, RoutingOutcome(str(chosen), match, str(affinity), int(skips), loads, ages)
