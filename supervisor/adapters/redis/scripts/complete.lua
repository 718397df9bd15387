-- Finish tasks of one queue that ran to success, in one call (a worker records its completions in
-- batches). Fenced task by task: only the worker that owns a task may finish it, so a worker whose
-- task was recovered and handed to another cannot erase the new run.
-- KEYS: 1 msg, 2 state, 3 lease, 4 owner, 5 processed counter, 6 this minute's counters (hash),
--       then, task by task, its unique lock (when its flag is '1') and its result key (when it
--       keeps a result)
-- ARGV: 1 worker id, 2 seconds the minute's counters live (set when the hash is created: one
--       EXPIRE per queue per minute), then four per task: id, '1' when it holds a unique lock,
--       retention in ms ('' = keep nothing), the completed-task record to keep for that long
-- Returns, task by task, 1 done or 0 not owned by this worker (nothing changed for that task).
local out = {}
local done = 0
local k = 7
for a = 3, #ARGV, 4 do
  local id = ARGV[a]
  local lock, result = nil, nil
  if ARGV[a + 1] == '1' then lock = KEYS[k]; k = k + 1 end
  if ARGV[a + 2] ~= '' then result = KEYS[k]; k = k + 1 end
  if redis.call('HGET', KEYS[4], id) == ARGV[1] then
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
    if lock and redis.call('GET', lock) == id then redis.call('DEL', lock) end
    if result then redis.call('SET', result, ARGV[a + 3], 'PX', ARGV[a + 2]) end
    done = done + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if done > 0 then
  redis.call('INCRBY', KEYS[5], done)
  if redis.call('HINCRBY', KEYS[6], 'processed', done) == done then redis.call('EXPIRE', KEYS[6], ARGV[2]) end
end
return out
