-- Mark workflow nodes released (their tasks were submitted): they leave the ready zset.
-- A node already released is left alone. A node canceled while its task was being submitted (its
-- scope failed meanwhile) is returned: its task, in a queue now, must be canceled there.
-- With the roots (released as one), 'roots' leaves the ready zset, and the roots canceled are
-- returned too: a root is canceled only after a failure, so only then are they looked for.
-- KEYS: 1 the flow's hash, 2 its ready zset; ARGV: 1 '1' with the roots, then the other nodes
-- Returns the nodes found canceled.
local canceled = {}
for i = 2, #ARGV do
  local s = redis.call('HGET', KEYS[1], 's:' .. ARGV[i])
  if s == 'ready' then
    redis.call('HSET', KEYS[1], 's:' .. ARGV[i], 'released')
  elseif s == 'canceled' then
    canceled[#canceled + 1] = ARGV[i]
  end
end
for i = 2, #ARGV, 4000 do
  redis.call('ZREM', KEYS[2], unpack(ARGV, i, math.min(i + 3999, #ARGV)))
end
if ARGV[1] == '1' then
  redis.call('ZREM', KEYS[2], 'roots')
  if tonumber(redis.call('HGET', KEYS[1], 'failures') or '0') > 0 then
    -- a root is a node without predecessors ('w:<node>')
    for i = 0, tonumber(redis.call('HGET', KEYS[1], 'total') or '0') - 1 do
      if redis.call('HGET', KEYS[1], 's:' .. i) == 'canceled' and redis.call('HEXISTS', KEYS[1], 'w:' .. i) == 0 then
        canceled[#canceled + 1] = tostring(i)
      end
    end
  end
end
return canceled
