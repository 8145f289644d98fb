-- Admit the symbols a reader missed into the pending set, within the admission limits.
-- KEYS[1] pending set, KEYS[2] wanted (ZSET: score = until when some reader waits, Redis time s),
-- KEYS[3] this caller's count of new symbols in the current second (HASH s, n), KEYS[3 + i] failure record of
-- symbol i (cleared: a new request means "try again").
-- ARGV: max_pending (0 = no cap), new_per_s (0 = no cap), wait_s, symbols...
-- Returns {pending size after, status of symbol 1, ...}: 0 already pending, 1 added, 2 over the caller's
-- rate of new symbols, 3 the set is full.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local max_pending = tonumber(ARGV[1])
local new_per_s = tonumber(ARGV[2])
local want_until = string.format('%.6f', now + tonumber(ARGV[3]))
local size = redis.call('ZCARD', KEYS[1])
local sec = tostring(math.floor(now))
local st = redis.call('HMGET', KEYS[3], 's', 'n')
local used = 0
if st[1] == sec then used = tonumber(st[2]) end
local out = {0}
for i = 4, #ARGV do
  local symbol = ARGV[i]
  local status
  if redis.call('ZSCORE', KEYS[1], symbol) then
    status = 0
  elseif max_pending > 0 and size >= max_pending then
    status = 3
  elseif new_per_s > 0 and used >= new_per_s then
    status = 2
  else
    redis.call('ZADD', KEYS[1], 'NX', now, symbol)
    size = size + 1
    used = used + 1
    status = 1
  end
  if status <= 1 then
    redis.call('ZADD', KEYS[2], 'GT', want_until, symbol)
    redis.call('DEL', KEYS[i])
  end
  out[#out + 1] = status
end
redis.call('HSET', KEYS[3], 's', sec, 'n', used)
redis.call('PEXPIRE', KEYS[3], 2000)
out[1] = size
return out
