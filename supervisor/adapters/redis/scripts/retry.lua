-- Schedule a failed task for a later attempt, storing its updated envelope (attempt count, error).
-- Fenced like complete.lua.
-- KEYS: 1 msg, 2 state, 3 lease, 4 owner, 5 retry zset, 6 failed counter, 7 this minute's counters
-- ARGV: 1 id, 2 worker id, 3 updated envelope, 4 retry time, 5 seconds the minute's counters live
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], 'retry')
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
redis.call('INCR', KEYS[6])
if redis.call('HINCRBY', KEYS[7], 'failed', 1) == 1 then redis.call('EXPIRE', KEYS[7], ARGV[5]) end
return 1
