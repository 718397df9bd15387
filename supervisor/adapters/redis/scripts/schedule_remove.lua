-- Remove a run-time schedule (see schedule_put.lua for the keys). Returns 1 if it existed.
-- KEYS: 1 definitions hash, 2 replaced definitions hash, 3 effective-from hash, 4 version counter
-- ARGV: 1 name
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if removed == 1 then
  redis.call('INCR', KEYS[4])
end
return removed
