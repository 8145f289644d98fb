-- Settle an order's idempotency record, only if the caller still owns the claim.
-- KEYS[1] record key; ARGV[1] owner; ARGV[2] "finish" or "release"; ARGV[3] new record JSON (finish).
-- Returns 1 when settled, 0 when the record is gone or belongs to another claim.
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
local record = cjson.decode(current)
if record['owner'] ~= ARGV[1] or record['state'] ~= 'in_progress' then
  return 0
end
if ARGV[2] == 'release' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
end
return 1
