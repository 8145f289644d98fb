-- Shared by the limiter scripts: prepended to each when it is loaded (see redis_keys.lua_source).

local function redis_now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- AIMD: the effective budget climbs back linearly from the last decrease (computed lazily, no timer).
local function effective_budget(n, recover, base, dec_at, now)
  if base and dec_at then return math.min(n, base + recover * math.max(0, now - dec_at) / 1000000) end
  return n
end

