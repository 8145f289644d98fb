-- Sliding-log rate limiter: grant one KIS call of class ARGV[1] if the last second (Redis time) has room.
-- KEYS[1] grant log (ZSET: score = grant time in µs, member = "<class>|<µs>")
-- KEYS[2] state (HASH: last = last grant µs, base/dec_at = AIMD decrease, d:<class> = last demand µs)
-- KEYS[3] epoch marker (STR: Redis time µs since which this limiter's state is known to be complete)
-- None of these keys expires: under a volatile-* eviction policy they are never evicted, and the log is trimmed
-- here. If the state is lost anyway (flush, failover to an empty replica), the epoch marker is gone with it:
-- nobody can prove how many calls the last second held, so nothing is granted for one full window.
-- ARGV: class, N, spacing_us, recover_per_s, demand_hold_us, window_us (1 s plus a guard band against
--       network jitter), horizon_us, unspaced class (its calls within its reserve wait for no spacing: an
--       order is not held up behind a booked quote; '' = none), follow_us (how long after its grant the
--       unspaced class still holds one slot back: the next page of a balance or the order after a quote
--       arrives a KIS round trip later and finds its slot free), then one (class, reserve, always_held) triple
--       per call class.
-- The grant goes to the earliest moment the class may call (spacing after the last grant, a slot free in the
-- window then). When that moment lies at most horizon_us ahead, it is booked now: the caller sleeps until it and
-- calls then, so the cadence of grants does not drift by each waiter's wake-up delay. Booked stamps count in
-- the window like any other grant; horizon_us = 0 grants only at once.
-- Returns {1, grant_us, delay_us} (call at grant_us, delay_us from now) or {0, wait_us}: the wait until the
-- earliest moment this class could be granted.
local cls = ARGV[1]
local n = tonumber(ARGV[2])
local spacing = tonumber(ARGV[3])
local recover = tonumber(ARGV[4])
local hold = tonumber(ARGV[5])
local WINDOW = tonumber(ARGV[6])

local HORIZON = tonumber(ARGV[7])
local UNSPACED = ARGV[8]
local FOLLOW = tonumber(ARGV[9])

local now = redis_now_us()
local epoch = tonumber(redis.call('GET', KEYS[3]))
if not epoch then
  epoch = now
  redis.call('SET', KEYS[3], string.format('%.0f', now))
end
if now < epoch + WINDOW then return {0, math.max(1, epoch + WINDOW - now)} end
local st = redis.call('HMGET', KEYS[2], 'last', 'base', 'dec_at')
local last = tonumber(st[1])
local n_eff = effective_budget(n, recover, tonumber(st[2]), tonumber(st[3]), now)
local slots = math.floor(n_eff + 1e-9)

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - WINDOW)
local log = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')

-- A class's reserve is held back from the others if it is always held (orders) or wanted recently;
-- an idle class's reserve is free to borrow. Reserves shrink with the AIMD budget.
local classes, held, count, one_more = {}, {}, {}, {}
for i = 10, #ARGV, 3 do
  local k = ARGV[i]
  local reserve = tonumber(ARGV[i + 1])
  if slots < n then reserve = math.floor(reserve * slots / n) end
  local seen = tonumber(redis.call('HGET', KEYS[2], 'd:' .. k))
  if k == cls or ARGV[i + 2] == '1' or (seen and now - seen < hold) then held[k] = reserve else held[k] = 0 end
  -- The unspaced class (orders with priority) is not always held: an order waiting for a slot holds back one
  -- slot beyond what orders already used in the window (it takes the next free slot), not its whole reserve.
  if k == UNSPACED and k ~= cls and ARGV[i + 2] ~= '1' and held[k] > 0 then one_more[k] = true end
  classes[#classes + 1] = k
  count[k] = 0
end
redis.call('HSET', KEYS[2], 'd:' .. cls, string.format('%.0f', now))

-- Count the grants that a window ending at `t` still holds (those stamped at or before t - WINDOW have left
-- it; grants booked after t are counted too).
local total, first = 0, #log + 1
local function count_at(t)
  total, first = 0, #log + 1
  for _, k in ipairs(classes) do count[k] = 0 end
  for i = 1, #log, 2 do
    if tonumber(log[i + 1]) > t - WINDOW then
      if first > #log then first = i end
      local k = string.match(log[i], '^(.-)|')
      count[k] = (count[k] or 0) + 1
      total = total + 1
    end
  end
end

-- The earliest stamp: spacing after the last grant (which may be booked ahead of now), except for the unspaced
-- class within its reserve. If Redis time steps back, the log must not: spaced stamps stay increasing.
local at = now
count_at(now)
if not (cls == UNSPACED and count[cls] < held[cls]) then
  if last and spacing > 0 and at < last + spacing then at = last + spacing end
  if last and at <= last then at = last + 1 end
  count_at(at)
end

local function admits()
  if total >= slots then return false end
  if count[cls] < held[cls] then return true end
  local taken = 0
  for _, k in ipairs(classes) do
    local h = held[k]
    if one_more[k] then h = math.min(h, count[k] + 1) end
    taken = taken + math.max(count[k], h)
  end
  return slots - taken > 0
end

if not admits() then
  -- Drop grants oldest first until this class would be admitted: that grant's expiry is the next slot.
  local free_at = at + WINDOW
  for i = first, #log, 2 do
    local k = string.match(log[i], '^(.-)|')
    count[k] = count[k] - 1
    total = total - 1
    if admits() then
      free_at = tonumber(log[i + 1]) + WINDOW
      break
    end
  end
  at = math.max(at, free_at)
end
if at - now <= HORIZON then
  -- One grant per microsecond: an unspaced stamp may meet another (a booked one, or the same microsecond).
  while #redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%.0f', at), string.format('%.0f', at),
                    'LIMIT', 0, 1) > 0 do
    at = at + 1
  end
  local stamp = string.format('%.0f', at)
  redis.call('ZADD', KEYS[1], stamp, cls .. '|' .. stamp)
  if not last or at > last then redis.call('HSET', KEYS[2], 'last', stamp) end
  -- A granted order no longer waits: its demand stops holding a slot back FOLLOW µs after its grant (it is
  -- dated as if it had been made that long before the hold runs out; another waiting order renews it).
  if cls == UNSPACED then
    redis.call('HSET', KEYS[2], 'd:' .. cls, string.format('%.0f', math.max(now, at) - hold + FOLLOW))
  end
  return {1, at, at - now}
end
return {0, math.max(1, at - now)}
