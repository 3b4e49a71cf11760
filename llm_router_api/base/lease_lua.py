"""Lua for the lease store in Redis (``redis_leases``): one release and one renewal for every
kind of lease, and the pieces the domain scripts that grant leases share.

A set of leases is a sorted set (member: lease id, score: expiry in ms of Redis' clock, so hosts
with skewed clocks agree). A lease released late (after an outage, or a grant the caller gave up
on) leaves a tombstone ``gone:<lease id>`` for one TTL, so a grant or renewal of that lease that
Redis runs afterwards (a timed-out script still runs when Redis wakes) does not bring it back.
Releases and renewals run even when Redis is out of memory (``allow-oom``): they free memory or
keep it, and a slot must never stay held because memory is short.

A provider lease's release wakes the head of its model's fair queue (``QUEUE``, ``waiting``):
KEYS queue zset (ticket -> arrival, us) and expiry zset (ticket -> expiry, ms); a waiter's wake
list is the wake prefix .. ticket (not a declared key: the router runs on one Redis, not a
cluster). A wake is one token, never two.
"""

from __future__ import annotations

NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

KEEP_KEY = """
local function keep(key, ttl)
  if redis.call('PTTL', key) < ttl + 1000 then redis.call('PEXPIRE', key, ttl + 1000) end
end
"""

QUEUE = """
local function purge(q, qx)
  local dead = redis.call('ZRANGEBYSCORE', qx, '-inf', now, 'LIMIT', 0, 64)
  if #dead > 0 then
    redis.call('ZREM', q, unpack(dead))
    redis.call('ZREM', qx, unpack(dead))
  end
end
local function wake_first(q, count, prefix, ttl)
  if count <= 0 or count == math.huge then return end
  for _, ticket in ipairs(redis.call('ZRANGE', q, 0, count - 1)) do
    local list = prefix .. ticket
    if redis.call('EXISTS', list) == 0 then
      redis.call('RPUSH', list, '1')
      redis.call('PEXPIRE', list, ttl)
    end
  end
end
"""

_ALLOW_OOM = "#!lua flags=allow-oom\n"

# Any number of releases in one call. KEYS, per lease in order: the sets it may be in, its
# tombstone, then (when it wakes a queue) the queue and its expiries. ARGV: wake prefix, ticket
# ttl ms, then per lease: lease id, tombstone ttl ms (0: none, an on-time release), how many
# sets, 1 when it wakes its queue (else 0). -> 1
RELEASE = _ALLOW_OOM + NOW + QUEUE + """
local prefix, qttl, k = ARGV[1], tonumber(ARGV[2]), 1
for i = 3, #ARGV, 4 do
  local id, tomb, sets = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  for j = k, k + sets - 1 do redis.call('ZREM', KEYS[j], id) end
  k = k + sets
  if tomb > 0 then redis.call('SET', KEYS[k], '1', 'PX', tomb) end
  k = k + 1
  if ARGV[i + 3] == '1' then
    purge(KEYS[k], KEYS[k + 1])
    wake_first(KEYS[k], 1, prefix, qttl)
    k = k + 2
  end
end
return 1
"""

# KEYS: per lease its set and its tombstone key. ARGV: ttl ms, then the lease ids. A lease
# missing from its set (FLUSHALL, restart without data, eviction) is put back: it is in use.
RENEW = _ALLOW_OOM + NOW + KEEP_KEY + """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  local set, tomb = KEYS[2 * i - 3], KEYS[2 * i - 2]
  if redis.call('EXISTS', tomb) == 0 then
    redis.call('ZADD', set, now + ttl, ARGV[i])
    keep(set, ttl)
  end
end
return 1
"""
