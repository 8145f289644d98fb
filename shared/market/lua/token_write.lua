-- Token store: write the record unless the stored token expires later (a slow refresher must not
-- overwrite a newer token written meanwhile by another instance). ARGV: record JSON, expires_at. 1 = written.
local current = redis.call('HGET', KEYS[1], 'expires_at')
if current and tonumber(current) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'expires_at', ARGV[2])
return 1
