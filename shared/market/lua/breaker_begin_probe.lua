-- Breaker: take the half-open probe lease. ARGV: owner, now, reset_timeout_s, lease expiry. 1 = taken.
local s = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'probe_until')
local now = tonumber(ARGV[2])
if s[1] == 'open' then
  if now < tonumber(s[2] or '0') + tonumber(ARGV[3]) then return 0 end
elseif s[1] == 'half-open' then
  if s[3] and now < tonumber(s[3]) then return 0 end
else
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'half-open', 'probe_owner', ARGV[1], 'probe_until', ARGV[4])
return 1
