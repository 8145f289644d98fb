-- Breaker: a success while closed ends the run of consecutive failures.
local s = redis.call('HMGET', KEYS[1], 'state', 'failures')
if (s[1] or 'closed') == 'closed' and s[2] and s[2] ~= '0' then
  redis.call('HSET', KEYS[1], 'failures', 0)
end
return 0
