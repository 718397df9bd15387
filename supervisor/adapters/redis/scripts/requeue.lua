-- Put an owned task back on its pending list: at the head (it runs next) or at the tail.
-- Used when a worker died or was stopped while holding the task, and when a lease expired.
-- Fenced on the owner the caller saw, so two recoverers cannot both requeue it.
-- KEYS: 1 msg, 2 state, 3 lease, 4 owner, 5 pending, 6 wake list
-- ARGV: 1 id, 2 expected owner, 3 updated envelope ('' keeps the stored one), 4 '1' head / '0' tail, 5 wake cap
--       (0 on a Redis Cluster: the caller rings the queue's doorbell instead)
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
redis.call('HSET', KEYS[2], ARGV[1], 'pending')
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[4] == '1' then
  redis.call('RPUSH', KEYS[5], ARGV[1])
else
  redis.call('LPUSH', KEYS[5], ARGV[1])
end
if tonumber(ARGV[5]) > 0 then
  redis.call('LPUSH', KEYS[6], '1')
  redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[5]) - 1)
end
return 1
