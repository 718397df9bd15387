-- Cancel one task. A task that waits (pending, scheduled, retry) ends 'canceled' here and never
-- runs: it leaves its list or set, its unique lock is released, it is kept in the canceled set (like
-- the archive, with the same bounds) and counted. A running one ('active') is flagged in the
-- canceling set, which its worker (told by pub/sub) and recovery read; its worker ends it.
-- KEYS: 1 msg, 2 state, 3 pending, 4 scheduled, 5 retry, 6 canceled set, 7 canceling, 8 owner,
--       9 canceled counter, [10 the unique lock the envelope names]
-- ARGV: 1 id, 2 now, 3 most ended tasks kept, 4 oldest ended time kept, 5 oldest flag kept
-- Returns {'canceled'}, {'running', owner}, {'missing'} or {'ended', state} (already archived or ended).
local id = ARGV[1]
local state = redis.call('HGET', KEYS[2], id)
if not state then return {'missing'} end
if state == 'active' then
  redis.call('ZADD', KEYS[7], ARGV[2], id)
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. ARGV[5])
  return {'running', redis.call('HGET', KEYS[8], id) or ''}
end
if state == 'pending' then
  redis.call('LREM', KEYS[3], 0, id)
elseif state == 'scheduled' then
  redis.call('ZREM', KEYS[4], id)
elseif state == 'retry' then
  redis.call('ZREM', KEYS[5], id)
else
  return {'ended', state}
end
if KEYS[10] and redis.call('GET', KEYS[10]) == id then redis.call('DEL', KEYS[10]) end
redis.call('HSET', KEYS[2], id, 'canceled')
redis.call('ZADD', KEYS[6], ARGV[2], id)
redis.call('INCR', KEYS[9])
local function drop(ids)
  if #ids == 0 then return end
  redis.call('ZREM', KEYS[6], unpack(ids))
  redis.call('HDEL', KEYS[1], unpack(ids))
  redis.call('HDEL', KEYS[2], unpack(ids))
end
drop(redis.call('ZRANGE', KEYS[6], '-inf', '(' .. ARGV[4], 'BYSCORE', 'LIMIT', 0, 100))
local excess = redis.call('ZCARD', KEYS[6]) - tonumber(ARGV[3])
if excess > 0 then drop(redis.call('ZRANGE', KEYS[6], 0, math.min(excess, 100) - 1)) end
return {'canceled'}
