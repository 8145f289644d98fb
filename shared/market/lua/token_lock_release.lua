-- Token refresh lock: delete it only if ARGV[1] (the caller) still owns it.
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0
