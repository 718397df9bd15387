-- Turn members of a group into one aggregated task, atomically (core/aggregation.py): either
-- every listed member leaves the group and the new task is pending, or nothing changes.
-- KEYS: 1 msg hash, 2 state hash, 3 pending list, 4 wake list, 5 group index zset, 6 group member zset
-- ARGV: 1 group id, 2 new task id, 3 new envelope, 4 wake list cap (0 on a Redis Cluster),
--       5... member ids (as the caller read them from the group)
-- Returns 1 when aggregated; 0 when a member is no longer in the group (another supervisor
-- aggregated it first, or an operator deleted it): the caller reads the group again.
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return 0 end
for i = 5, #ARGV do
  if not redis.call('ZSCORE', KEYS[6], ARGV[i]) then return 0 end
end
-- The new task first: under maxmemory its HSET is refused before anything changed; once a script
-- has written, Redis lets it finish, so the members are never removed without their task.
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], 'pending')
redis.call('LPUSH', KEYS[3], ARGV[2])
for i = 5, #ARGV do
  redis.call('ZREM', KEYS[6], ARGV[i])
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
-- The group's index entry follows its oldest remaining member, or goes with the last one.
local first = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
if #first == 0 then
  redis.call('ZREM', KEYS[5], ARGV[1])
else
  redis.call('ZADD', KEYS[5], first[2], ARGV[1])
end
local cap = tonumber(ARGV[4])
if cap > 0 then
  redis.call('LPUSH', KEYS[4], '1')
  redis.call('LTRIM', KEYS[4], 0, cap - 1)
end
return 1
