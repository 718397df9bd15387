-- Store one limit of a queue (core/flow.py's Limit).
-- KEYS: 1 the queue's limits hash
-- ARGV: 1 scope, 2 'count period burst cap', 3 source ('code' or 'cli'), 4 for a 'key:<group>'
--       scope: the header that names a task's key when it has no limit_key ('' = none), kept
--       in the field 'header:<group>'
-- A declaration from code does not replace a limit set at run time: returns 0 then, else 1.
if ARGV[3] == 'code' then
  local current = redis.call('HGET', KEYS[1], ARGV[1])
  if current and string.sub(current, -4) == ' cli' then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
if string.sub(ARGV[1], 1, 4) == 'key:' then
  local field = 'header:' .. string.sub(ARGV[1], 5)
  if (ARGV[4] or '') ~= '' then redis.call('HSET', KEYS[1], field, ARGV[4]) else redis.call('HDEL', KEYS[1], field) end
end
return 1
