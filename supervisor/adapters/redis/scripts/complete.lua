-- Finish a task that ran to success. Fenced: only the worker that owns the task may finish it,
-- so a worker whose task was recovered and handed to another cannot erase the new run.
-- KEYS: 1 msg, 2 state, 3 lease, 4 owner, 5 processed counter, 6 this minute's counters (hash),
--       then the task's unique lock (ARGV[3] = '1'), then its result key (ARGV[4] set)
-- ARGV: 1 id, 2 worker id, 3 '1' when the task holds a unique lock, 4 retention in ms ('' = keep
--       nothing), 5 the completed-task record to keep for that long, 6 seconds the minute's
--       counters live (set when the hash is created: one EXPIRE per queue per minute)
-- Returns 1 done, 0 not owned by this worker (nothing changed).
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[5])
if redis.call('HINCRBY', KEYS[6], 'processed', 1) == 1 then redis.call('EXPIRE', KEYS[6], ARGV[6]) end
local k = 7
if ARGV[3] == '1' then
  if redis.call('GET', KEYS[k]) == ARGV[1] then redis.call('DEL', KEYS[k]) end
  k = k + 1
end
if ARGV[4] ~= '' then redis.call('SET', KEYS[k], ARGV[5], 'PX', ARGV[4]) end
return 1
