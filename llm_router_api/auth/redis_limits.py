"""``RedisLimiter``: one budget per key shared by every worker and instance.

Layout (under ``LLM_ROUTER_REDIS_PREFIX`` + ``auth:``)::

    <key>:requests   sorted set: admission id -> time (ms), the last 60 s (at most the limit)
    <key>:tokens     hash: second -> tokens charged in it (at most 61 fields)

The key's concurrency slots live in the lease store's set (``base.redis_leases``:
``auth:<key>:leases``, tombstones ``gone:<id>``): ``ADMIT`` grants into it atomically with the
rate decisions; releases and renewals are the lease store's.

Every decision is one Lua script on Redis' clock, O(1) whatever the traffic. Every Redis error
is an outage (the lease store's ``redis_link.Fallback``, one per worker): budgets are then per
process and one warning is logged. An admission whose call failed may still run in Redis later:
it is undone (request and lease, tombstoned) as soon as Redis answers again, and a release that
could not be sent is delivered then — no slot stays held by nobody.
"""

from __future__ import annotations

from typing import Any

from llm_router_api.auth.keys import ApiKey
from llm_router_api.auth.limits import (
    BUCKET,
    BUCKETS,
    Admission,
    Limiter,
    MemoryLimiter,
    rate_headers,
    refusal,
)
from llm_router_api.base import lease_lua
from llm_router_api.base.leases import KEY
from llm_router_api.base.redis_leases import RedisLeases, to_ms
from llm_router_api.base.redis_link import LeanScript

_BUCKET_MS = int(BUCKET * 1000)

# KEYS: requests zset, tokens hash, leases zset, the admission's tombstone.
# ARGV: rpm limit (0 = none), tpm limit, concurrency limit, admission id, lease ttl ms.
# -> {ok, what, retry ms, requests left, tokens left}
ADMIT = lease_lua.NOW + f"""
if redis.call('EXISTS', KEYS[4]) == 1 then return {{0, 'gone', 1000, 0, 0}} end
local window, size, buckets = 60000, {_BUCKET_MS}, {BUCKETS}
local rpm, tpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local requests = 0
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  requests = redis.call('ZCARD', KEYS[1])
end
local used, first = 0, nil
if tpm > 0 then
  local oldest = math.floor(now / size) - buckets + 1
  local fields = redis.call('HGETALL', KEYS[2])
  for i = 1, #fields, 2 do
    local bucket = tonumber(fields[i])
    if bucket < oldest then redis.call('HDEL', KEYS[2], fields[i])
    else
      used = used + tonumber(fields[i + 1])
      if first == nil or bucket < first then first = bucket end
    end
  end
end
if rpm > 0 and requests >= rpm then
  local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {{0, 'requests', tonumber(head[2]) + window - now, 0, tpm - used}}
end
if tpm > 0 and used >= tpm then
  return {{0, 'tokens', (first + buckets) * size - now, rpm - requests, 0}}
end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= conc then
    return {{0, 'concurrent', 1000, rpm - requests, tpm - used}}
  end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), ARGV[4])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[5]) + 1000)
end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
end
return {{1, 'ok', 0, rpm - requests - 1, tpm - used}}
"""

# KEYS: tokens hash; ARGV: tokens
RECORD = lease_lua.NOW + f"""
redis.call('HINCRBY', KEYS[1], math.floor(now / {_BUCKET_MS}), ARGV[1])
redis.call('PEXPIRE', KEYS[1], {(BUCKETS + 1) * _BUCKET_MS})
return 1
"""


class RedisLimiter(Limiter):
    """One budget per key shared by every worker and instance; per-process budgets (and one
    warning in the log) while Redis cannot be used. ``leases``: the worker's lease store (by
    default one of its own on ``client`` and ``prefix``)."""

    def __init__(self, client: Any, prefix: str, lease_ttl: float, where: str = "redis",
                 leases: RedisLeases | None = None) -> None:
        self._own_leases = leases is None
        shared = leases if leases is not None else RedisLeases(client, prefix, where)
        super().__init__(lease_ttl, shared)
        self._shared = shared
        self._redis = client
        self._prefix = prefix + "auth:"
        self._admit = LeanScript(client, ADMIT)
        self._record = LeanScript(client, RECORD)
        self._memory = MemoryLimiter(lease_ttl, shared)
        self._fallback = shared.fallback

    def _key(self, key_id: str, part: str) -> str:
        return f"{self._prefix}{key_id}:{part}"

    def pending_deliveries(self) -> int:
        return self._fallback.pending()

    def admit(self, key: ApiKey) -> Admission:
        admission_id = Admission.new_id()
        sets = [self._key(key.id, "requests"), self._shared.set_key(KEY, key.id)]
        keys = [sets[0], self._key(key.id, "tokens"), sets[1],
                self._shared.tomb_key(admission_id)]
        args = [key.requests_per_minute or 0, key.tokens_per_minute or 0,
                key.max_concurrent or 0, admission_id, to_ms(self.lease_ttl)]
        lease_id = admission_id if key.max_concurrent is not None else None

        def shared() -> Admission:
            ok, what, retry_ms, requests_left, tokens_left = self._admit(keys=keys, args=args)
            what = what.decode() if isinstance(what, bytes) else str(what)
            if not ok:
                raise refusal(key, what, int(retry_ms) / 1000, int(requests_left),
                              int(tokens_left))
            return Admission(key.id, lease_id,
                             rate_headers(key, int(requests_left), int(tokens_left)))

        # The admission may still run in Redis: take it back (request and lease) then.
        return self._fallback.run(shared, lambda: self._memory.admit(key),
                                  self._shared.undo(admission_id, sets))

    def record_tokens(self, key_id: str, tokens: int) -> None:
        if tokens > 0:
            self._fallback.run(
                lambda: self._record(keys=[self._key(key_id, "tokens")], args=[tokens]),
                lambda: self._memory.record_tokens(key_id, tokens))

    def close(self) -> None:
        if self._own_leases:
            self._shared.close()
        self._redis.close()
