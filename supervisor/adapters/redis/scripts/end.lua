-- End an owned task without running it again: 'canceled' (its cancel reached the worker) or
-- 'expired' (claimed after its expiry, or its retry would fall after it). Fenced like
-- complete.lua. The task is kept in the ended set (bounded like the archive), its cancel flag
-- and unique lock go, and the state's counter grows.
-- KEYS: 1 msg, 2 state, 3 lease, 4 owner, 5 the state's set (canceled or expired), 6 canceling, 7 the state's counter,
--       [8 unique lock]
-- ARGV: 1 id, 2 worker id, 3 'canceled' or 'expired', 4 envelope ('' keeps the stored one),
--       5 now, 6 most ended tasks kept, 7 oldest ended time kept
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
if KEYS[8] and redis.call('GET', KEYS[8]) == ARGV[1] then redis.call('DEL', KEYS[8]) end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[4]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[1])
redis.call('INCR', KEYS[7])
local function drop(ids)
  if #ids == 0 then return end
  redis.call('ZREM', KEYS[5], unpack(ids))
  redis.call('HDEL', KEYS[1], unpack(ids))
  redis.call('HDEL', KEYS[2], unpack(ids))
end
drop(redis.call('ZRANGE', KEYS[5], '-inf', '(' .. ARGV[7], 'BYSCORE', 'LIMIT', 0, 100))
local excess = redis.call('ZCARD', KEYS[5]) - tonumber(ARGV[6])
if excess > 0 then drop(redis.call('ZRANGE', KEYS[5], 0, math.min(excess, 100) - 1)) end
return 1
