-- Store a workflow's definition (see supervisor/flows.py's record), its roots ready as one.
-- All of a flow's keys share the hash tag {<ns>:flow:<id>}, so this runs in one slot.
-- A root has no field of its own (its envelope is in the 'roots' blob): the ready zset's member
-- 'roots' says the roots are ready and not released yet, since when (the store's clock).
-- KEYS: 1 the flow's hash, 2 its ready zset (node, or 'roots' -> when it became ready)
-- ARGV: the field/value pairs
-- Returns 1 when stored, 0 when the flow exists.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
for i = 1, #ARGV, 4000 do  -- HSET with many pairs at once, within Lua's unpack limit
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 3999, #ARGV)))
end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(t[1]) + tonumber(t[2]) / 1000000, 'roots')
return 1
