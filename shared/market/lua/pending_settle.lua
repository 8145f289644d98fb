-- Settle claimed symbols, only those still owned by ARGV[2]:
--   complete: done, no longer pending;  release: lease dropped, still pending;
--   fail: no longer pending, reason recorded for waiters (expires after ARGV[4] s);
--   renew: lease extended to now + ARGV[3] s (a drain still working on them).
-- KEYS[1] pending set, KEYS[2] leases, KEYS[3] owners, KEYS[4] wanted, KEYS[5] kept,
-- KEYS[5 + i] failure record of symbol i (fail only)
-- ARGV: mode, owner, reason | lease_s, failure_ttl_s, symbols... Returns how many symbols were settled.
local mode, owner = ARGV[1], ARGV[2]
local settled = 0
local until_s
if mode == 'renew' then
  local t = redis.call('TIME')
  until_s = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[3]))
end
for i = 5, #ARGV do
  local symbol = ARGV[i]
  if redis.call('HGET', KEYS[3], symbol) == owner then
    if mode == 'renew' then
      redis.call('ZADD', KEYS[2], until_s, symbol)
    else
      redis.call('HDEL', KEYS[3], symbol)
      redis.call('ZREM', KEYS[2], symbol)
      if mode ~= 'release' then
        redis.call('ZREM', KEYS[1], symbol)
        redis.call('ZREM', KEYS[4], symbol)
        redis.call('SREM', KEYS[5], symbol)
      end
      if mode == 'fail' then redis.call('SET', KEYS[i + 1], ARGV[3], 'EX', ARGV[4]) end
    end
    settled = settled + 1
  end
end
return settled
