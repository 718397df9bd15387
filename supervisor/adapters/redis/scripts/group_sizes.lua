-- The size of each of one queue's groups and when its newest member joined. Read-only.
-- KEYS: the group member zsets
-- Returns {size, newest member's time ('' when empty), size, time, ...}, in KEYS' order
local out = {}
for i = 1, #KEYS do
  out[#out + 1] = redis.call('ZCARD', KEYS[i])
  local last = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
  out[#out + 1] = last[2] or ''
end
return out
