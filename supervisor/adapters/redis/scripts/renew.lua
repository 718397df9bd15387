-- Extend the leases of every task owned by the given workers, in the given queues, to Redis's
-- clock plus the lease duration (see claim.lua: one clock for every host).
-- KEYS: 2 per queue: owner hash, lease zset
-- ARGV: 1 lease duration in seconds, 2.. worker ids, then the caller's now or '' for Redis's clock
-- Returns the number of leases extended.
local now = tonumber(ARGV[#ARGV])
if ARGV[#ARGV] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local deadline = now + tonumber(ARGV[1])
local workers = {}
for i = 2, #ARGV - 1 do workers[ARGV[i]] = true end
local n = 0
for b = 1, #KEYS, 2 do
  local owners = redis.call('HGETALL', KEYS[b])
  for i = 1, #owners, 2 do
    if workers[owners[i + 1]] then
      redis.call('ZADD', KEYS[b + 1], 'XX', deadline, owners[i])
      n = n + 1
    end
  end
end
return n
