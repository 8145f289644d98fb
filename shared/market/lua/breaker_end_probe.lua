-- Breaker: the probe's verdict. ARGV: owner, "1" success / "0" failure, now. Returns the new state,
-- or false when the caller no longer holds the probe.
local s = redis.call('HMGET', KEYS[1], 'state', 'probe_owner')
if s[1] ~= 'half-open' or s[2] ~= ARGV[1] then return false end
redis.call('HDEL', KEYS[1], 'probe_owner', 'probe_until')
if ARGV[2] == '1' then
  redis.call('HDEL', KEYS[1], 'opened_at')
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
  return 'closed'
end
redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[3])
return 'open'
