"""The Lua behind ``cache_aware`` in Redis: one script per routing decision.

``CHOOSE_CACHED`` mirrors ``cache_scoring.decide`` and ``CacheTables.decide`` (keep them
equivalent; the tests run both stores): skip candidates cooling down or at their cap, read each
one's live leases, prefix match (``ZMSCORE`` of the prompt's block hashes in the provider's
``pfx:`` sorted set: member hash, score the time it was last sent, in ms of Redis' clock) and
load signals (hash ``sig:``, with the time ``ts`` they were taken), apply the rule, then lease
the pick and record the prompt's blocks (trimmed to the TTL and the entry bound) and the
session's provider — all in one round trip.

Keys: KEYS[1] the strategy's state hash, KEYS[2] the session's key (a placeholder when there is
no session), then per candidate i: KEYS[2 + 4(i-1) + 1..4] its lease set, cool-down key, prefix
set and signals hash; then the lease's tombstone, the failures hash and the failure sequence
hash (a half-open provider takes one lease at most, as in ``redis_lua.CHOOSE``).
ARGV: ttl ms (-1: no lease), lease id, k, number of hashes, prefix weight, load weight,
saturation waiting, saturation KV, max signal age ms, affinity bound, affinity slack, prefix
entries, prefix ttl ms, has session (0/1), soft slots, imbalance factor; then id and cap (-1)
per candidate; then the hashes. -> {id, lease id or '', matched blocks, affinity, skips,
failure seq, 1 if half-open else 0, then per available candidate: id, load, signal age ms
(-1: none)} or nil.
"""

from __future__ import annotations

from llm_router_api.base import lease_lua
from llm_router_api.base.lb import redis_lua

_NOW = lease_lua.NOW
_KEEP_KEY = lease_lua.KEEP_KEY

CHOOSE_CACHED = _NOW + _KEEP_KEY + redis_lua._HALF_OPEN + """
local ttl, lease_id, k, nh = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local wp, wl = tonumber(ARGV[5]), tonumber(ARGV[6])
local sat_wait, sat_kv, max_age = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local bound, slack, entries = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local pttl, has_session, soft = tonumber(ARGV[13]), ARGV[14] == '1', tonumber(ARGV[15])
local imbalance = tonumber(ARGV[16])
local state, session = KEYS[1], KEYS[2]
local failures, failseq = KEYS[4 + 4 * k], KEYS[5 + 4 * k]
if redis.call('EXISTS', KEYS[3 + 4 * k]) == 1 then return false end
local hashes = {}
for i = 1, nh do hashes[i] = ARGV[16 + 2 * k + i] end
local function num(v) if v then return tonumber(v) end return 0 end
local avail = {}
local known = {}
for i = 1, k do
  local id = ARGV[16 + 2 * i - 1]
  local cap = half_open_cap(failures, id, tonumber(ARGV[16 + 2 * i]))
  local base = 2 + 4 * (i - 1)
  known[id] = true
  if redis.call('EXISTS', KEYS[base + 2]) == 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[base + 1], '-inf', now)
    local n = redis.call('ZCARD', KEYS[base + 1])
    if cap < 0 or n < cap then
      avail[#avail + 1] = {id = id, cap = cap, n = n, lease = KEYS[base + 1],
                           pfx = KEYS[base + 3], sig = KEYS[base + 4]}
    end
  end
end
if #avail == 0 then return false end
local most, fewest = 0, nil
for _, c in ipairs(avail) do
  if c.n > most then most = c.n end
  if fewest == nil or c.n < fewest then fewest = c.n end
end
local oldest = now - pttl
for _, c in ipairs(avail) do
  c.matched = 0
  if nh > 0 then
    local scores = redis.call('ZMSCORE', c.pfx, unpack(hashes))
    for i = 1, nh do
      local s = scores[i]
      if not s or tonumber(s) <= oldest then break end
      c.matched = i
    end
  end
  if c.cap > 0 then c.load = c.n / c.cap else c.load = c.n / math.max(most, soft) end
  c.age = -1
  c.saturated = c.n - fewest >= sat_wait and c.n > imbalance * fewest
  local raw = redis.call('HGETALL', c.sig)
  local sig = {}
  for i = 1, #raw, 2 do sig[raw[i]] = tonumber(raw[i + 1]) end
  if sig.ts then
    c.age = math.max(0, now - sig.ts)
    if c.age <= max_age then
      local s = 0
      if sig.kv then
        s = math.max(s, sig.kv)
        c.saturated = c.saturated or sig.kv >= sat_kv
      end
      if sig.waiting then c.saturated = c.saturated or sig.waiting >= sat_wait end
      if sig.loaded == 0 then s = 1
      elseif sig.vram then s = math.max(s, 1 - sig.vram) end
      c.load = math.max(c.load, s)
    end
  end
  c.load = math.min(c.load, 1)
end
local pool = {}
for _, c in ipairs(avail) do if not c.saturated then pool[#pool + 1] = c end end
if #pool == 0 then pool = avail end
local skips = #avail - #pool
local affinity, chosen = '', nil
local previous = false
if has_session then previous = redis.call('GET', session) end
if previous and known[previous] then
  local total = 0
  for _, c in ipairs(pool) do total = total + c.load end
  local limit = bound * (total / #pool) + slack
  local mine = nil
  for _, c in ipairs(pool) do if c.id == previous then mine = c end end
  if mine and mine.load <= limit + 1e-9 then
    chosen, affinity = mine, 'hit'
  else
    affinity = 'break'
    if mine and #pool > 1 then
      local rest = {}
      for _, c in ipairs(pool) do if c.id ~= previous then rest[#rest + 1] = c end end
      pool = rest
    end
  end
end
if not chosen then
  local bs, bn, bq = nil, nil, nil
  for _, c in ipairs(pool) do
    local match = 0
    if nh > 0 then match = c.matched / nh end
    local s = -math.floor((wp * match + wl * (1 - c.load)) * 1e9 + 0.5)
    local q = num(redis.call('HGET', state, c.id))
    if bs == nil or s < bs or (s == bs and (c.n < bn or (c.n == bn and q < bq))) then
      chosen, bs, bn, bq = c, s, c.n, q
    end
  end
end
local seq = num(redis.call('HGET', state, '__seq__')) + 1
local text = string.format('%.17g', seq)
redis.call('HSET', state, '__seq__', text, chosen.id, text)
if nh > 0 then
  local args = {}
  for i = 1, nh do
    args[#args + 1] = string.format('%.17g', now - (i - 1) * 0.001)
    args[#args + 1] = hashes[i]
    if #args >= 2000 then
      redis.call('ZADD', chosen.pfx, unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call('ZADD', chosen.pfx, unpack(args)) end
  redis.call('ZREMRANGEBYSCORE', chosen.pfx, '-inf', oldest)
  local card = redis.call('ZCARD', chosen.pfx)
  if card > entries then redis.call('ZREMRANGEBYRANK', chosen.pfx, 0, card - entries - 1) end
  redis.call('PEXPIRE', chosen.pfx, pttl)
end
if has_session then redis.call('SET', session, chosen.id, 'PX', pttl) end
local trial = '0'
if tonumber(redis.call('HGET', failures, chosen.id) or '0') > 0 then trial = '1' end
local answer = {chosen.id, '', tostring(chosen.matched), affinity, tostring(skips),
                redis.call('HGET', failseq, chosen.id) or '0', trial}
for _, c in ipairs(avail) do
  answer[#answer + 1] = c.id
  answer[#answer + 1] = string.format('%.17g', c.load)
  answer[#answer + 1] = tostring(c.age)
end
if ttl >= 0 then
  redis.call('ZADD', chosen.lease, now + ttl, lease_id)
  keep(chosen.lease, ttl)
  answer[2] = lease_id
end
return answer
"""

# KEYS[1] the provider's signals hash. ARGV: keep ms, then field, value pairs. The time they
# were taken (``ts``) is Redis' own, so every instance reads the same age.
PUT_SIGNALS = _NOW + """
redis.call('DEL', KEYS[1])
local args = {'ts', tostring(now)}
for i = 2, #ARGV do args[#args + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(args))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# KEYS: the signals hashes. -> per key: the age in ms (-1: none), then its field/value list
SIGNALS = _NOW + """
local out = {}
for _, key in ipairs(KEYS) do
  local raw = redis.call('HGETALL', key)
  local ts = nil
  local rest = {}
  for i = 1, #raw, 2 do
    if raw[i] == 'ts' then ts = tonumber(raw[i + 1])
    else rest[#rest + 1] = raw[i]; rest[#rest + 1] = raw[i + 1] end
  end
  if ts then out[#out + 1] = tostring(math.max(0, now - ts)) else out[#out + 1] = '-1' end
  out[#out + 1] = rest
end
return out
"""

# KEYS[1] the lock. ARGV: token, ms. -> 1 when the caller holds it now
HOLD_LOCK = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
"""
