-- Settle claimed symbols, only those still owned by ARGV[2]:
--   complete: done, no longer pending;  release: lease dropped, still pending;
--   fail: no longer pending, reason recorded for waiters (expires after ARGV[4] s).
-- KEYS[1] pending set, KEYS[2] leases, KEYS[3] owners, KEYS[3 + i] failure record of symbol i (fail only)
-- ARGV: mode, owner, reason, failure_ttl_s, symbols... Returns how many symbols were settled.
local mode, owner = ARGV[1], ARGV[2]
local settled = 0
for i = 5, #ARGV do
  local symbol = ARGV[i]
  if redis.call('HGET', KEYS[3], symbol) == owner then
    redis.call('HDEL', KEYS[3], symbol)
    redis.call('ZREM', KEYS[2], symbol)
    if mode ~= 'release' then redis.call('ZREM', KEYS[1], symbol) end
    if mode == 'fail' then redis.call('SET', KEYS[i - 1], ARGV[3], 'EX', ARGV[4]) end
    settled = settled + 1
  end
end
return settled
