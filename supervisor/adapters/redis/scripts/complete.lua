-- Finish a task that ran to success. Fenced: only the worker that owns the task may finish it,
-- so a worker whose task was recovered and handed to another cannot erase the new run.
-- KEYS: 1 msg, 2 state, 3 lease, 4 owner, 5 processed counter
-- ARGV: 1 id, 2 worker id
-- Returns 1 done, 0 not owned by this worker (nothing changed).
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[5])
return 1
