-- Mark workflow nodes released (their tasks were submitted): they leave the ready zset.
-- A node already released is left alone. A node canceled while its task was being submitted (its
-- scope failed meanwhile) is returned: its task, in a queue now, must be canceled there.
-- KEYS: 1 the flow's hash, 2 its ready zset; ARGV: the nodes
-- Returns the nodes found canceled.
local canceled = {}
for i = 1, #ARGV do
  local s = redis.call('HGET', KEYS[1], 's:' .. ARGV[i])
  if s == 'ready' then
    redis.call('HSET', KEYS[1], 's:' .. ARGV[i], 'released')
  elseif s == 'canceled' then
    canceled[#canceled + 1] = ARGV[i]
  end
  redis.call('ZREM', KEYS[2], ARGV[i])
end
return canceled
