-- Read-only view of the limiter: effective budget and the grants of the last second.
-- KEYS[1] grant log, KEYS[2] state; ARGV: N, recover_per_s
-- Returns {now_us, effective budget as a string, member, member, ...}.
local WINDOW = 1000000
local n = tonumber(ARGV[1])
local recover = tonumber(ARGV[2])
local now = redis_now_us()
local st = redis.call('HMGET', KEYS[2], 'base', 'dec_at')
local n_eff = effective_budget(n, recover, tonumber(st[1]), tonumber(st[2]), now)
local out = {now, string.format('%.6f', n_eff)}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now - WINDOW), '+inf')) do
  out[#out + 1] = m
end
return out
