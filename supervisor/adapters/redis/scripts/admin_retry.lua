-- Move tasks that are waiting (scheduled, retry, archived) back to pending, to run now.
-- Active and pending tasks are left alone.
-- KEYS: 1 msg, 2 state, 3 pending, 4 scheduled, 5 retry, 6 archived, 7 wake
-- ARGV: 1 wake cap (0 on a Redis Cluster: the caller rings the doorbell), 2.. ids
-- Returns the number of tasks moved.
local sets = {scheduled = KEYS[4], retry = KEYS[5], archived = KEYS[6]}
local moved = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local state = redis.call('HGET', KEYS[2], id)
  local set = state and sets[state]
  if set then
    redis.call('ZREM', set, id)
    redis.call('HSET', KEYS[2], id, 'pending')
    redis.call('LPUSH', KEYS[3], id)
    if tonumber(ARGV[1]) > 0 then redis.call('LPUSH', KEYS[7], '1') end
    moved = moved + 1
  end
end
if tonumber(ARGV[1]) > 0 then redis.call('LTRIM', KEYS[7], 0, tonumber(ARGV[1]) - 1) end
return moved
