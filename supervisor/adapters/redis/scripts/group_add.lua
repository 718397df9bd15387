-- Enqueue a member of a group (core/aggregation.py): store its envelope and put its id in its
-- group's set, not on the pending list; the group is listed in the queue's group index.
-- KEYS: 1 msg hash, 2 state hash, 3 group index zset, 4 group member zset, 5 queue registry set
-- ARGV: 1 id, 2 envelope bytes, 3 group id, 4 queue name ('' on a Redis Cluster: the caller
--       registers the queue, as for enqueue.lua)
-- Returns {code, id} with enqueue.lua's codes: 1 enqueued, 0 duplicate id, 2 identical envelope
-- already stored (a resent call that had landed).
-- Times are Redis's own (TIME), so every supervisor judges a group's grace period on one clock.
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  if existing == ARGV[2] then return {2, ARGV[1]} end
  return {0, ARGV[1]}
end
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], 'aggregating')
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', now, ARGV[3])
if ARGV[4] ~= '' then redis.call('SADD', KEYS[5], ARGV[4]) end
return {1, ARGV[1]}
