-- A KIS EGW00201 (rate limited) answer: on a burst of reports, multiply the fleet's budget down (AIMD),
-- at most once per second. No key here expires (see limiter_acquire.lua); reports are trimmed to the window.
-- KEYS[1] state (HASH, see limiter_acquire.lua), KEYS[2] reports (ZSET of report times in µs)
-- ARGV: N, decrease_factor, recover_per_s, burst_reports, burst_window_us
-- Returns {decreased (0/1), effective budget as a string}.
local n = tonumber(ARGV[1])
local factor = tonumber(ARGV[2])
local recover = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local window = tonumber(ARGV[5])

local now = redis_now_us()
local st = redis.call('HMGET', KEYS[1], 'base', 'dec_at')
local dec_at = tonumber(st[2])
local n_eff = effective_budget(n, recover, tonumber(st[1]), dec_at, now)

local seq = redis.call('HINCRBY', KEYS[1], 'reports', 1)
redis.call('ZADD', KEYS[2], string.format('%.0f', now), seq)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)

local decreased = 0
if redis.call('ZCARD', KEYS[2]) >= burst and (not dec_at or now - dec_at >= 1000000) then
  n_eff = math.max(1, math.floor(n_eff * factor))
  redis.call('HSET', KEYS[1], 'base', n_eff, 'dec_at', string.format('%.0f', now))
  -- Answers to calls made before the decrease must not count towards the next one.
  redis.call('DEL', KEYS[2])
  decreased = 1
end
return {decreased, string.format('%.6f', n_eff)}
