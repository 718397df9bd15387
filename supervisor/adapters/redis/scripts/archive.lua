-- Archive (dead-letter) a task with its error, and trim the archive by age and size.
-- Fenced like complete.lua. The task may be stored under a new id (store id) when the claimed id
-- itself was unusable (raw bytes pushed onto a queue by something else): the claimed entry is
-- removed and the archived envelope keeps those bytes for inspection.
-- A unique lock held by the task is released: an archived task no longer blocks its duplicates.
-- KEYS: 1 msg, 2 state, 3 lease, 4 owner, 5 archived zset, 6 failed counter, 7 this minute's
--       counters (hash), [8 unique lock]
-- ARGV: 1 claimed id, 2 worker id, 3 store id, 4 envelope, 5 now, 6 max archived, 7 oldest kept time,
--       8 seconds the minute's counters live
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
if KEYS[8] and redis.call('GET', KEYS[8]) == ARGV[1] then redis.call('DEL', KEYS[8]) end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[3] ~= ARGV[1] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[3], 'archived')
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[3])
redis.call('INCR', KEYS[6])
if redis.call('HINCRBY', KEYS[7], 'failed', 1) == 1 then redis.call('EXPIRE', KEYS[7], ARGV[8]) end
-- Bounded growth: drop the oldest beyond the age and size limits, at most 100 per call.
local function drop(ids)
  if #ids == 0 then return end
  redis.call('ZREM', KEYS[5], unpack(ids))
  redis.call('HDEL', KEYS[1], unpack(ids))
  redis.call('HDEL', KEYS[2], unpack(ids))
end
drop(redis.call('ZRANGE', KEYS[5], '-inf', '(' .. ARGV[7], 'BYSCORE', 'LIMIT', 0, 100))
local excess = redis.call('ZCARD', KEYS[5]) - tonumber(ARGV[6])
if excess > 0 then
  drop(redis.call('ZRANGE', KEYS[5], 0, math.min(excess, 100) - 1))
end
return 1
