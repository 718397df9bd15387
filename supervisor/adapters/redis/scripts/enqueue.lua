-- Enqueue one task: store its envelope and put its id on the pending list (or the scheduled set).
-- KEYS: 1 msg hash, 2 state hash, 3 pending list, 4 scheduled zset, 5 wake list, 6 queue registry set
-- ARGV: 1 id, 2 envelope bytes, 3 process_at ('' = now), 4 queue name, 5 wake list cap
-- Returns 1 enqueued, 0 duplicate id, 2 the same envelope is already stored (a retried call that had landed).
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  if existing == ARGV[2] then return 2 end
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then
  redis.call('HSET', KEYS[2], ARGV[1], 'pending')
  redis.call('LPUSH', KEYS[3], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], 'scheduled')
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
end
-- A wake-up token per enqueue lets one idle worker blocked on BRPOP start at once. Tokens are list
-- elements, not pub/sub messages, so none is lost while no worker is listening; the cap bounds them.
redis.call('LPUSH', KEYS[5], '1')
redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[5]) - 1)
redis.call('SADD', KEYS[6], ARGV[4])
return 1
