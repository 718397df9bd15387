-- Delete tasks that are not running (pending, scheduled, retry, archived).
-- KEYS: 1 msg, 2 state, 3 pending, 4 scheduled, 5 retry, 6 archived
-- ARGV: ids
-- Returns the number deleted.
local sets = {scheduled = KEYS[4], retry = KEYS[5], archived = KEYS[6]}
local deleted = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  local state = redis.call('HGET', KEYS[2], id)
  if state == 'pending' then
    redis.call('LREM', KEYS[3], 0, id)
  elseif state and sets[state] then
    redis.call('ZREM', sets[state], id)
  else
    state = nil
  end
  if state then
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    deleted = deleted + 1
  end
end
return deleted
