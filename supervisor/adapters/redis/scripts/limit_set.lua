-- Store one limit of a queue (core/flow.py's Limit).
-- KEYS: 1 the queue's limits hash
-- ARGV: 1 scope, 2 'count period burst cap', 3 source ('code' or 'cli')
-- A declaration from code does not replace a limit set at run time: returns 0 then, else 1.
if ARGV[3] == 'code' then
  local current = redis.call('HGET', KEYS[1], ARGV[1])
  if current and string.sub(current, -4) == ' cli' then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
return 1
