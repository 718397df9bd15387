-- Store a workflow's definition (see supervisor/core/flows.py), its first nodes marked ready.
-- All of a flow's keys share the hash tag {<ns>:flow:<id>}, so this runs in one slot.
-- KEYS: 1 the flow's hash, 2 its ready zset (node -> when it became ready, the store's clock)
-- ARGV: 1 number of field/value pairs n, 2..2n+1 the pairs, then the ready nodes
-- Returns 1 when stored, 0 when the flow exists.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local n = tonumber(ARGV[1])
local last = 2 * n + 1
for i = 2, last, 4000 do  -- HSET with many pairs at once, within Lua's unpack limit
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 3999, last)))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 2 * n + 2, #ARGV do
  redis.call('HSET', KEYS[1], 's:' .. ARGV[i], 'ready')
  redis.call('ZADD', KEYS[2], now, ARGV[i])
end
return 1
