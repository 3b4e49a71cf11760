"""``RedisStore``: load-balancing state shared by every worker and instance through Redis.

Layout (under ``LLM_ROUTER_REDIS_PREFIX``, default ``llm_router:``)::

    lease:<provider>   sorted set: lease id -> expiry (ms, Redis clock)
    cool:<provider>    string with a TTL: present while the provider cools down
    h:<key>            hash of counters (strategy state, health failures, latencies, weights)

Every multi-step operation is one Lua script (``redis_lua``), so caps and pick rules hold across
processes. Nothing is deleted at startup: one instance's restart never wipes another's state.

Redis outage (``base.redis_link.Fallback``): sockets time out quickly, never longer. On a
connection error or timeout the store logs one warning and serves from a per-process
``MemoryStore`` (requests keep being served; caps and counters are then per process), tries Redis
again at most every second, and logs when it is back. Leases remember where they were granted
(Redis lease ids start with ``r-``), so each is released and renewed in its own store; a Redis
lease whose release was lost to the outage expires by its TTL.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis

from llm_router_api.base.lb import redis_lua
from llm_router_api.base.lb.picking import Candidate
from llm_router_api.base.lb.state import MemoryStore, StateStore
from llm_router_api.base.redis_link import Fallback, redis_address, redis_client
from llm_router_api.settings import Settings

log = logging.getLogger("llm_router.redis")

REDIS_LEASE = "r-"
T = TypeVar("T")



def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisStore(StateStore):
    def __init__(self, client: redis.Redis, prefix: str = "llm_router:",
                 where: str = "redis") -> None:
        self._redis = client
        self._prefix = prefix
        self._where = where
        self._memory = MemoryStore()
        self._fallback = Fallback(where, "load-balancing state")
        self._scripts = {name: client.register_script(getattr(redis_lua, name))
                         for name in ("ACQUIRE", "RENEW", "IN_FLIGHT", "EWMA", "CHOOSE")}

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        return cls(redis_client(settings), settings.redis_prefix, redis_address(settings))

    # -- outage handling ---------------------------------------------------------------------
    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and this process serves from memory."""
        return self._fallback.down

    def _run(self, shared: Callable[[], T], local: Callable[[], T]) -> T:
        return self._fallback.run(shared, local)

    # -- keys ------------------------------------------------------------------------------------
    def _lease_key(self, provider_id: str) -> str:
        return f"{self._prefix}lease:{provider_id}"

    def _cool_key(self, provider_id: str) -> str:
        return f"{self._prefix}cool:{provider_id}"

    def _hash_key(self, key: str) -> str:
        return f"{self._prefix}h:{key}"

    # -- leases ----------------------------------------------------------------------------------
    def acquire_lease(self, provider_id: str, cap: int | None, ttl: float) -> str | None:
        lease_id = REDIS_LEASE + uuid.uuid4().hex

        def shared() -> str | None:
            granted = self._scripts["ACQUIRE"](keys=[self._lease_key(provider_id)],
                                               args=[-1 if cap is None else cap, _ms(ttl),
                                                     lease_id])
            return lease_id if granted else None

        return self._run(shared, lambda: self._memory.acquire_lease(provider_id, cap, ttl))

    def choose_lease(self, rule: str, state_key: str, candidates: Sequence[Candidate],
                     ttl: float | None) -> tuple[str, str | None] | None:
        lease_id = REDIS_LEASE + uuid.uuid4().hex
        ids = [c.id for c in candidates]
        keys = ([self._hash_key(state_key)] + [self._lease_key(i) for i in ids]
                + [self._cool_key(i) for i in ids])
        args: list[Any] = [rule, -1 if ttl is None else _ms(ttl), lease_id, len(candidates)]
        for c in candidates:
            args += [c.id, -1 if c.cap is None else c.cap, repr(float(c.weight))]

        def shared() -> tuple[str, str | None] | None:
            answer = self._scripts["CHOOSE"](keys=keys, args=args)
            if not answer:
                return None
            return str(answer[0]), (str(answer[1]) or None)

        return self._run(shared, lambda: self._memory.choose_lease(rule, state_key,
                                                                   candidates, ttl))

    def release_lease(self, provider_id: str, lease_id: str) -> None:
        if not lease_id.startswith(REDIS_LEASE):
            self._memory.release_lease(provider_id, lease_id)
            return
        # Lost to an outage, the lease expires by its TTL.
        self._run(lambda: self._redis.zrem(self._lease_key(provider_id), lease_id),
                  lambda: 0)

    def renew_leases(self, leases: Mapping[str, str], ttl: float) -> None:
        shared = {k: v for k, v in leases.items() if k.startswith(REDIS_LEASE)}
        local = {k: v for k, v in leases.items() if not k.startswith(REDIS_LEASE)}
        if local:
            self._memory.renew_leases(local, ttl)
        if shared:
            keys = [self._lease_key(provider_id) for provider_id in shared.values()]
            self._run(lambda: self._scripts["RENEW"](keys=keys, args=[_ms(ttl), *shared]),
                      lambda: None)

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
        self._run(lambda: self._redis.set(self._cool_key(provider_id), "1", px=_ms(seconds)),
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

    def close(self) -> None:
        self._redis.close()
