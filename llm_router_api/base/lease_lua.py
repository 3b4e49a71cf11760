"""Lua for leases in Redis, shared by provider slots and API-key concurrency.

A set of leases is a sorted set (member: lease id, score: expiry in ms of Redis' clock, so hosts
with skewed clocks agree). A lease released late (after an outage, or a grant the caller gave up
on) leaves a tombstone ``gone:<lease id>`` for one TTL, so a grant or renewal of that lease that
Redis runs afterwards (a timed-out script still runs when Redis wakes) does not bring it back.
Releases and renewals run even when Redis is out of memory (``allow-oom``): they free memory or
keep it, and a slot must never stay held because memory is short.
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

_ALLOW_OOM = "#!lua flags=allow-oom\n"

# KEYS: lease sets the lease may be in, then its tombstone key. ARGV: lease id, tombstone ttl ms
# (0: none, an on-time release). -> 1
RELEASE = _ALLOW_OOM + """
local n = #KEYS - 1
for i = 1, n do redis.call('ZREM', KEYS[i], ARGV[1]) end
local tomb = tonumber(ARGV[2])
if tomb > 0 then redis.call('SET', KEYS[n + 1], '1', 'PX', tomb) end
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
