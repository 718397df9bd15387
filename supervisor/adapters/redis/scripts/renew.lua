-- Extend the leases of every task owned by the given workers, in the given queues.
-- KEYS: 2 per queue: owner hash, lease zset
-- ARGV: 1 new lease deadline, 2.. worker ids
-- Returns the number of leases extended.
local workers = {}
for i = 2, #ARGV do workers[ARGV[i]] = true end
local n = 0
for b = 1, #KEYS, 2 do
  local owners = redis.call('HGETALL', KEYS[b])
  for i = 1, #owners, 2 do
    if workers[owners[i + 1]] then
      redis.call('ZADD', KEYS[b + 1], 'XX', ARGV[1], owners[i])
      n = n + 1
    end
  end
end
return n
