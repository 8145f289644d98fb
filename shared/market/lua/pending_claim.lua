-- Claim up to ARGV[1] of the oldest pending symbols that nobody holds a live lease on.
-- KEYS[1] pending set, KEYS[2] leases (ZSET: score = expiry, Redis time s), KEYS[3] owners (HASH)
-- ARGV: max_n, owner, lease_s. Returns the claimed symbols, oldest first.
local max_n = tonumber(ARGV[1])
local owner = ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
-- A lease that ran out belongs to a drainer that died or stalled: its symbols are claimable again.
-- (The owner entry stays until someone else claims, so a late but live owner may still complete.)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local leased = redis.call('ZCARD', KEYS[2])
-- Among the oldest max_n + leased pending symbols at least max_n are free, if that many exist.
local candidates = redis.call('ZRANGE', KEYS[1], 0, max_n + leased - 1)
local until_s = string.format('%.6f', now + tonumber(ARGV[3]))
local claimed = {}
for _, symbol in ipairs(candidates) do
  if #claimed >= max_n then break end
  if not redis.call('ZSCORE', KEYS[2], symbol) then
    redis.call('ZADD', KEYS[2], until_s, symbol)
    redis.call('HSET', KEYS[3], symbol, owner)
    claimed[#claimed + 1] = symbol
  end
end
return claimed
