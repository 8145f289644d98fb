-- Mark symbols pending once, however many callers want them (ZADD NX; score = first-wanted Redis time, s),
-- and keep them until fetched (preloads: no reader waits for them, they must not expire).
-- KEYS[1] pending set, KEYS[2] kept (SET; a name ending in ":nokeep" keeps nothing: readers' misses),
-- KEYS[2 + i] failure record of ARGV[i] (cleared: a new request means "try again"). Returns how many were new.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local keep = string.sub(KEYS[2], -7) ~= ':nokeep'
local added = 0
for i, symbol in ipairs(ARGV) do
  added = added + redis.call('ZADD', KEYS[1], 'NX', now, symbol)
  if keep then redis.call('SADD', KEYS[2], symbol) end
  redis.call('DEL', KEYS[i + 2])
end
return added
