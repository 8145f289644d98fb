-- Admit the symbols a reader missed into the pending set, within the admission limits.
-- KEYS[1] pending set, KEYS[2] wanted (ZSET: score = until when some reader waits, Redis time s),
-- KEYS[3] this caller's count of new symbols in the current second (HASH s, n), KEYS[3 + i] failure record of
-- symbol i (cleared: a new request means "try again"); with the freshness check, KEYS[3 + n + i] the fresh copy
-- key of symbol i (n symbols).
-- ARGV: max_pending (0 = no cap), new_per_s (0 = no cap), wait_s, check_fresh (1: a symbol whose fresh copy
-- exists is not admitted: it was written since the reader looked), symbols...
-- Returns {pending size after, status of symbol 1, ...}: 0 already pending, 1 added, 2 over the caller's
-- rate of new symbols, 3 the set is full, 4 a fresh copy exists (read it).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local max_pending = tonumber(ARGV[1])
local new_per_s = tonumber(ARGV[2])
local want_until = string.format('%.6f', now + tonumber(ARGV[3]))
local check_fresh = ARGV[4] == '1'
local n = #ARGV - 4
local size = redis.call('ZCARD', KEYS[1])
local sec = tostring(math.floor(now))
local st = redis.call('HMGET', KEYS[3], 's', 'n')
local used = 0
if st[1] == sec then used = tonumber(st[2]) end
local out = {0}
for j = 1, n do
  local symbol = ARGV[4 + j]
  local fail_key = KEYS[3 + j]
  local status
  if check_fresh and redis.call('EXISTS', KEYS[3 + n + j]) == 1 then
    status = 4
  elseif redis.call('ZSCORE', KEYS[1], symbol) then
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
    redis.call('DEL', fail_key)
  end
  out[#out + 1] = status
end
redis.call('HSET', KEYS[3], 's', sec, 'n', used)
redis.call('PEXPIRE', KEYS[3], 2000)
out[1] = size
return out
