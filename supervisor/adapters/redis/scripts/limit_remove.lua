-- Remove one limit of a queue; the tasks waiting in its lanes go back to the head of the pending
-- list (the oldest runs first), and the lanes' rate and cap keys go; the count of held-back
-- tasks ('held') drops by as many.
-- KEYS: 1 the queue's limits hash, 2 its pending list (the other keys' prefix is derived from it)
-- ARGV: 1 scope
-- Returns the number of tasks moved back, or -1 when there was no such limit.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return -1 end
local p = string.sub(KEYS[2], 1, -8)
local moved = 0
local function drop(lane)
  while redis.call('LMOVE', p .. 'lane:' .. lane, KEYS[2], 'LEFT', 'RIGHT') do moved = moved + 1 end
  redis.call('ZREM', p .. 'lanes', lane)
  redis.call('DEL', p .. 'rate:' .. lane, p .. 'cap:' .. lane)
end
if ARGV[1] == 'queue' then
  redis.call('DEL', p .. 'rate:queue', p .. 'cap:queue')
elseif string.sub(ARGV[1], 1, 4) == 'key:' then
  local group = string.sub(ARGV[1], 5)
  redis.call('HDEL', KEYS[1], 'header:' .. group)
  for _, lane in ipairs(redis.call('ZRANGE', p .. 'lanes', 0, -1)) do
    local g = string.match(lane, '^key:([^:]+)')
    if g == group then drop(lane) end
  end
else
  drop(ARGV[1])
end
if moved > 0 then redis.call('DECRBY', p .. 'held', moved) end
return moved
