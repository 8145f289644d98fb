-- Claim up to ARGV[1] pending symbols that nobody holds a live lease on: first those a reader is waiting for
-- (latest deadline first: under overload a fetch then still finds its reader waiting, where serving the soonest
-- deadline first fetches for readers that have answered stale and left by the time the value arrives; ties by
-- code), then the oldest others. Before that, drop pending symbols nobody has waited for
-- in ARGV[4] seconds (unless kept: preloads), so abandoned requests cost no KIS calls.
-- KEYS[1] pending set, KEYS[2] leases (ZSET: score = expiry, Redis time s), KEYS[3] owners (HASH),
-- KEYS[4] wanted (ZSET: score = until when a reader waits), KEYS[5] kept (SET: never expire)
-- ARGV: max_n, owner, lease_s, idle_s. Returns {expired count, claimed symbol, ...}.
local max_n = tonumber(ARGV[1])
local owner = ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
-- A lease that ran out belongs to a drainer that died or stalled: its symbols are claimable again.
-- (The owner entry stays until someone else claims, so a late but live owner may still complete.)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)

local expired = 0
local idle = tonumber(ARGV[4])
if idle and idle > 0 then
  for _, symbol in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', string.format('%.6f', now - idle),
                                     'LIMIT', 0, 512)) do
    if not redis.call('ZSCORE', KEYS[2], symbol) then
      redis.call('ZREM', KEYS[4], symbol)
      if redis.call('SISMEMBER', KEYS[5], symbol) == 0 and redis.call('ZREM', KEYS[1], symbol) == 1 then
        redis.call('HDEL', KEYS[3], symbol)
        expired = expired + 1
      end
    end
  end
end

local until_s = string.format('%.6f', now + tonumber(ARGV[3]))
local out = {expired}
local function take(symbol)
  if #out - 1 >= max_n then return end
  if not redis.call('ZSCORE', KEYS[2], symbol) and redis.call('ZSCORE', KEYS[1], symbol) then
    redis.call('ZADD', KEYS[2], until_s, symbol)
    redis.call('HSET', KEYS[3], symbol, owner)
    out[#out + 1] = symbol
  end
end

local leased = redis.call('ZCARD', KEYS[2])
local waited = redis.call('ZREVRANGEBYSCORE', KEYS[4], '+inf', string.format('%.6f', now), 'WITHSCORES',
                          'LIMIT', 0, max_n + leased)
local order = {}
for i = 1, #waited, 2 do order[#order + 1] = {waited[i], tonumber(waited[i + 1])} end
table.sort(order, function(a, b)
  if a[2] ~= b[2] then return a[2] > b[2] end
  return a[1] < b[1]
end)
for _, pair in ipairs(order) do
  take(pair[1])
end
if #out - 1 < max_n then
  leased = redis.call('ZCARD', KEYS[2])
  -- Among the oldest max_n + leased pending symbols at least max_n are free, if that many exist.
  for _, symbol in ipairs(redis.call('ZRANGE', KEYS[1], 0, max_n + leased - 1)) do
    take(symbol)
  end
end
return out
