-- Read-only view of the limiter: effective budget and the grants of the last second.
-- KEYS[1] grant log, KEYS[2] state; ARGV: N, recover_per_s
-- Returns {now_us, effective budget as a string, member, member, ...}.
local WINDOW = 1000000
local n = tonumber(ARGV[1])
local recover = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local st = redis.call('HMGET', KEYS[2], 'base', 'dec_at')
local base, dec_at = tonumber(st[1]), tonumber(st[2])
local n_eff = n
if base and dec_at then n_eff = math.min(n, base + recover * math.max(0, now - dec_at) / 1000000) end
local out = {now, string.format('%.6f', n_eff)}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now - WINDOW), '+inf')) do
  out[#out + 1] = m
end
return out
