-- Breaker (one hash; fields state, opened_at, failures, successes, probe_owner, probe_until):
-- count a failure while closed; the one that reaches ARGV[1] (fail_max) opens it at ARGV[2]. 1 = opened.
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state ~= 'closed' then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if n < tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', ARGV[2])
return 1
