"""The Lua scripts behind ``RedisStore``; each runs atomically inside Redis.

Times come from Redis (``TIME``, milliseconds), so instances on hosts with skewed clocks agree on
lease expiry. Leases of a provider are a sorted set (member: lease id, score: expiry). Numbers are
written with ``%.17g`` so a double survives the round trip exactly (Redis would cut them to 14
digits). ``CHOOSE`` mirrors ``picking.pick``; keep the two equivalent. A grant checks the lease's
tombstone (``lease_lua``): a grant that Redis runs after its caller gave up and released it
grants nothing. The lease sets, their release (which also wakes the model's queue,
``waiting``) and their renewal belong to the lease store (``lease_lua``, ``redis_leases``).
"""

from __future__ import annotations

from llm_router_api.base import lease_lua

_NOW = lease_lua.NOW
_KEEP_KEY = lease_lua.KEEP_KEY
_QUEUE = lease_lua.QUEUE

# A half-open provider (failure count above zero, cool-down over) takes one lease at most: its
# trial. ``half_open_cap(failures hash, provider id, cap)`` is that cap (-1: none).
_HALF_OPEN = """
local function half_open_cap(failures, id, cap)
  if tonumber(redis.call('HGET', failures, id) or '0') > 0 and (cap < 0 or cap > 1) then
    return 1
  end
  return cap
end
"""

# KEYS[1] lease zset, KEYS[2] the lease's tombstone, KEYS[3] the failures hash. ARGV: cap (-1:
# none), ttl ms, lease id, provider id. -> 1 or nil
ACQUIRE = _NOW + _KEEP_KEY + _HALF_OPEN + """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = half_open_cap(KEYS[3], ARGV[4], tonumber(ARGV[1]))
if cap >= 0 and redis.call('ZCARD', KEYS[1]) >= cap then return false end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
keep(KEYS[1], ttl)
return 1
"""

# KEYS: lease zsets. -> live lease count of each
IN_FLIGHT = _NOW + """
local counts = {}
for i, key in ipairs(KEYS) do counts[i] = redis.call('ZCOUNT', key, '(' .. now, '+inf') end
return counts
"""

# KEYS[1] hash. ARGV: member, value, alpha. -> the new average
EWMA = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local value = tonumber(ARGV[2])
if old then value = tonumber(ARGV[3]) * value + (1 - tonumber(ARGV[3])) * tonumber(old) end
local text = string.format('%.17g', value)
redis.call('HSET', KEYS[1], ARGV[1], text)
return text
"""

# KEYS[1] the rule's state hash, KEYS[1 + i] lease zset and KEYS[1 + k + i] cool-down key of
# candidate i, KEYS[2 + 2k] the lease's tombstone, KEYS[3 + 2k] the failures hash, KEYS[4 + 2k]
# the failure sequence hash, KEYS[5 + 2k] and KEYS[6 + 2k] the model's queue and its expiries.
# ARGV: rule, ttl ms (-1: no lease), lease id, k, then id, cap (-1), weight per candidate, then
# ticket ('': no queue), ticket ttl ms, wake prefix. -> {provider id, lease id or '', failure
# seq, 1 if half-open else 0} or nil when no candidate is available (or it is not the caller's
# turn: its ticket then waits in the queue).
CHOOSE = _NOW + _KEEP_KEY + _HALF_OPEN + _QUEUE + """
local rule, ttl, lease_id, k = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local state = KEYS[1]
if redis.call('EXISTS', KEYS[2 + 2 * k]) == 1 then return false end
local function num(v) if v then return tonumber(v) end return 0 end
local function fmt(x) return string.format('%.17g', x) end
local avail, free, open = {}, 0, false
for i = 1, k do
  local base = 4 + (i - 1) * 3
  if redis.call('EXISTS', KEYS[1 + k + i]) == 0 then
    open = true
    redis.call('ZREMRANGEBYSCORE', KEYS[1 + i], '-inf', now)
    local n = redis.call('ZCARD', KEYS[1 + i])
    local cap = half_open_cap(KEYS[3 + 2 * k], ARGV[base + 1], tonumber(ARGV[base + 2]))
    if cap < 0 or n < cap then
      avail[#avail + 1] = {id = ARGV[base + 1], w = tonumber(ARGV[base + 3]), n = n,
                           key = KEYS[1 + i]}
      if cap < 0 then free = math.huge else free = free + cap - n end
    end
  end
end
local ticket, qttl, wake = ARGV[5 + 3 * k], tonumber(ARGV[6 + 3 * k]), ARGV[7 + 3 * k]
local q, qx = KEYS[5 + 2 * k], KEYS[6 + 2 * k]
local queued = false
if ticket ~= '' and ttl >= 0 then
  purge(q, qx)
  local ahead = redis.call('ZRANK', q, ticket)
  queued = ahead ~= false
  if not queued then ahead = redis.call('ZCARD', q) end
  if ahead >= free then
    if open then
      if not queued then
        redis.call('ZADD', q, tonumber(t[1]) * 1000000 + tonumber(t[2]), ticket)
      end
      redis.call('ZADD', qx, now + qttl, ticket)
      redis.call('PEXPIRE', q, qttl + 1000)
      redis.call('PEXPIRE', qx, qttl + 1000)
    end
    wake_first(q, math.min(free, ahead), wake, qttl)
    return false
  end
end
if #avail == 0 then return false end
local best = 1
if rule == 'balanced' then
  local bn, bs = nil, nil
  for i, c in ipairs(avail) do
    local s = num(redis.call('HGET', state, c.id))
    if bn == nil or c.n < bn or (c.n == bn and s < bs) then best, bn, bs = i, c.n, s end
  end
  local seq = num(redis.call('HGET', state, '__seq__')) + 1
  redis.call('HSET', state, '__seq__', fmt(seq), avail[best].id, fmt(seq))
elseif rule == 'weighted' then
  local picks = num(redis.call('HGET', state, '__n__'))
  local total = 0
  for _, c in ipairs(avail) do total = total + c.w end
  local delta = 0
  if #avail > 1 then delta = 1 / (2 * #avail - 2) end
  local step = picks + 1
  local counts, shares, ok = {}, {}, {}
  local any = false
  for i, c in ipairs(avail) do
    local r = c.w / total
    shares[i] = r
    counts[i] = math.min(math.max(num(redis.call('HGET', state, c.id)), picks * r - 1),
                         picks * r + 1)
    ok[i] = counts[i] + 1 - step * r <= 1 - delta + 1e-9
    any = any or ok[i]
  end
  local bd = nil
  for i = 1, #avail do
    if ok[i] or not any then
      local d = (counts[i] + 1 - delta) / shares[i]
      if bd == nil or d < bd then best, bd = i, d end
    end
  end
  counts[best] = counts[best] + 1
  local args = {'__n__', fmt(step)}
  for i, c in ipairs(avail) do
    args[#args + 1] = c.id
    args[#args + 1] = fmt(counts[i])
  end
  redis.call('HSET', state, unpack(args))
elseif rule ~= 'first' then
  return redis.error_reply('unknown pick rule ' .. rule)
end
local chosen = avail[best]
local seq = tonumber(redis.call('HGET', KEYS[4 + 2 * k], chosen.id) or '0')
local trial = 0
if tonumber(redis.call('HGET', KEYS[3 + 2 * k], chosen.id) or '0') > 0 then trial = 1 end
if ttl < 0 then return {chosen.id, '', seq, trial} end
redis.call('ZADD', chosen.key, now + ttl, lease_id)
keep(chosen.key, ttl)
if queued then
  redis.call('ZREM', q, ticket)
  redis.call('ZREM', qx, ticket)
  redis.call('DEL', wake .. ticket)
end
if ticket ~= '' then wake_first(q, free - 1, wake, qttl) end
return {chosen.id, lease_id, seq, trial}
"""

# KEYS[1] failures hash, KEYS[2] failure sequence hash, KEYS[3] the cool-down key. ARGV:
# provider id, seq seen at grant (-1: count anyway), base ms, cap ms, retry-after ms (-1: none).
# -> cool-down ms, or -1 when the failure is older than the latest one (not counted)
FAIL = """
local seq = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) >= 0 and tonumber(ARGV[2]) ~= seq then return -1 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local failures = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1], 1))
local ms = tonumber(ARGV[5])
if ms < 0 then
  ms = math.min(tonumber(ARGV[3]) * 2 ^ math.min(failures - 1, 62), tonumber(ARGV[4]))
end
ms = math.max(1, math.floor(ms))
redis.call('SET', KEYS[3], '1', 'PX', ms)
return ms
"""

# KEYS[1] failures hash, KEYS[2] failure sequence hash, KEYS[3] the cool-down key. ARGV:
# provider id, seq seen at grant (-1: reset anyway). -> 1 when reset, else 0
SUCCEED = """
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') == 0 then return 0 end
local seq = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) >= 0 and tonumber(ARGV[2]) ~= seq then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], '0')
redis.call('DEL', KEYS[3])
return 1
"""

# A waiter gives its place up; an unused wake goes to the new head. KEYS: queue, expiries.
# ARGV: ticket, wake prefix, ticket ttl ms.
LEAVE = "#!lua flags=allow-oom\n" + _NOW + _QUEUE + """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('DEL', ARGV[2] .. ARGV[1]) == 1 then
  purge(KEYS[1], KEYS[2])
  wake_first(KEYS[1], 1, ARGV[2], tonumber(ARGV[3]))
end
return 1
"""
