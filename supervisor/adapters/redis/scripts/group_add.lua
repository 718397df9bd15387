-- Enqueue a member of a group (core/aggregation.py): store its envelope and put its id in its
-- group's set, not on the pending list; the group is listed in the queue's group index.
-- KEYS: 1 msg hash, 2 state hash, 3 group index zset, 4 group member zset, 5 queue registry set,
--       6 the once-marker (a periodic tick's; only when ARGV[5] is set)
-- ARGV: 1 id, 2 envelope bytes, 3 group id, 4 queue name ('' on a Redis Cluster: the caller
--       registers the queue, as for enqueue.lua), 5 once-marker ttl in ms ('' = none)
-- Returns {code, id} with enqueue.lua's codes: 1 enqueued, 0 duplicate id, 2 identical envelope
-- already stored (a resent call that had landed), 4 the once-marker exists (the tick is enqueued).
if ARGV[5] ~= '' and redis.call('EXISTS', KEYS[6]) == 1 then return {4, redis.call('GET', KEYS[6])} end
-- Times are Redis's own (TIME), so every supervisor judges a group's grace period on one clock.
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  if existing == ARGV[2] then return {2, ARGV[1]} end
  return {0, ARGV[1]}
end
if ARGV[5] ~= '' then redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[5]) end
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], 'aggregating')
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', now, ARGV[3])
if ARGV[4] ~= '' then redis.call('SADD', KEYS[5], ARGV[4]) end
return {1, ARGV[1]}
