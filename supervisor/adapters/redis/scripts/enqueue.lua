-- Enqueue one task: store its envelope and put its id on the pending list (or the scheduled set).
-- KEYS: 1 msg hash, 2 state hash, 3 pending list, 4 scheduled zset, 5 wake list, 6 queue registry set,
--       then, when asked for: the unique lock (ARGV[6] set), then the once-marker (ARGV[7] set)
-- ARGV: 1 id, 2 envelope bytes, 3 process_at ('' = now), 4 queue name, 5 wake list cap,
--       6 unique lock ttl in ms ('' = none), 7 once-marker ttl in ms ('' = none)
-- On a Redis Cluster the registry and the wake list are another slot's business: the caller passes
-- an empty queue name and a cap of 0 (KEYS[6] is then any key of this queue's slot, never touched)
-- and does both itself.
-- Returns {code, existing id}: 1 enqueued; 0 duplicate id; 2 the same envelope is already stored (a
-- resent call that had landed); 3 another task holds the unique lock (its id); 4 the once-marker
-- exists (a periodic tick some other supervisor already enqueued).
local k = 7
local lock = nil
if ARGV[6] ~= '' then
  lock = KEYS[k]
  k = k + 1
end
if ARGV[7] ~= '' then
  -- Checked before anything else, the identity check included: two supervisors can build
  -- byte-identical envelopes for one tick (same id, same clock reading), and the second must
  -- not read as "my resent call had landed". Whoever sets the marker enqueues the tick.
  if redis.call('EXISTS', KEYS[k]) == 1 then return {4, redis.call('GET', KEYS[k])} end
end
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  if existing == ARGV[2] then return {2, ARGV[1]} end
  return {0, ARGV[1]}
end
if lock then
  local holder = redis.call('GET', lock)
  if holder then return {3, holder} end
end
if ARGV[7] ~= '' then redis.call('SET', KEYS[k], ARGV[1], 'PX', ARGV[7]) end
if lock then redis.call('SET', lock, ARGV[1], 'PX', ARGV[6]) end
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
if tonumber(ARGV[5]) > 0 then
  redis.call('LPUSH', KEYS[5], '1')
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[5]) - 1)
end
if ARGV[4] ~= '' then redis.call('SADD', KEYS[6], ARGV[4]) end
return {1, ARGV[1]}
