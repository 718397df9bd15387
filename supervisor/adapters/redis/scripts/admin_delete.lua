-- Delete tasks that are not running (pending, scheduled, retry, archived).
-- KEYS: 1 msg, 2 state, 3 pending, 4 scheduled, 5 retry, 6 archived, then one unique lock per id
--       that holds one (in the order of those ids)
-- ARGV: pairs of (id, '1' when it holds a unique lock else '0')
-- Returns the number deleted.
--
-- Bounded work per call: ids are taken last to first, and a pending id is removed with
-- LREM count -1, which scans from the tail and stops at the first match. Bulk deletes pass the
-- ids of the pending list's tail window in list order, so each one is found at (or near) the
-- tail: O(1) per id instead of a whole-list scan (LREM count 0), linear in the window overall.
local sets = {scheduled = KEYS[4], retry = KEYS[5], archived = KEYS[6]}
local locks = {}
local k = 7
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == '1' then
    locks[i] = KEYS[k]
    k = k + 1
  end
end
local deleted = 0
for i = #ARGV - 1, 1, -2 do
  local id = ARGV[i]
  local lock = locks[i]
  local state = redis.call('HGET', KEYS[2], id)
  if state == 'pending' then
    redis.call('LREM', KEYS[3], -1, id)
  elseif state and sets[state] then
    redis.call('ZREM', sets[state], id)
  else
    state = nil
  end
  if state then
    if lock and redis.call('GET', lock) == id then redis.call('DEL', lock) end
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    deleted = deleted + 1
  end
end
return deleted
