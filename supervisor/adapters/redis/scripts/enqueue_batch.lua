-- Enqueue many plain tasks (no unique lock, no once-marker) into one queue in one call: the
-- batch API's fast path. Same effects per task as enqueue.lua.
-- KEYS: 1 msg hash, 2 state hash, 3 pending list, 4 scheduled zset, 5 wake list, 6 queue registry set
-- ARGV: 1 queue name, 2 wake list cap, then triples: id, envelope bytes, process_at ('' = now)
-- On a Redis Cluster: an empty queue name and a cap of 0, as in enqueue.lua.
-- Returns a flat list {code, id, code, id...} with enqueue.lua's codes (1 enqueued, 0 duplicate id,
-- 2 identical envelope already stored).
local out = {}
local woken = 0
for i = 3, #ARGV, 3 do
  local id, data, at = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local existing = redis.call('HGET', KEYS[1], id)
  if existing then
    out[#out + 1] = (existing == data) and 2 or 0
  else
    redis.call('HSET', KEYS[1], id, data)
    if at == '' then
      redis.call('HSET', KEYS[2], id, 'pending')
      redis.call('LPUSH', KEYS[3], id)
    else
      redis.call('HSET', KEYS[2], id, 'scheduled')
      redis.call('ZADD', KEYS[4], at, id)
    end
    woken = woken + 1
    out[#out + 1] = 1
  end
  out[#out + 1] = id
end
-- One token per new task, up to the cap: enough for every idle worker to wake.
local cap = tonumber(ARGV[2])
if woken > 0 and cap > 0 then
  local tokens = {}
  for _ = 1, math.min(woken, cap) do tokens[#tokens + 1] = '1' end
  redis.call('LPUSH', KEYS[5], unpack(tokens))
  redis.call('LTRIM', KEYS[5], 0, cap - 1)
end
if ARGV[1] ~= '' then redis.call('SADD', KEYS[6], ARGV[1]) end
return out
