-- Mark workflow nodes released (their tasks were submitted): they leave the ready zset.
-- A node no longer 'ready' (canceled by a failure meanwhile, or already released) is left alone.
-- KEYS: 1 the flow's hash, 2 its ready zset; ARGV: the nodes
for i = 1, #ARGV do
  if redis.call('HGET', KEYS[1], 's:' .. ARGV[i]) == 'ready' then
    redis.call('HSET', KEYS[1], 's:' .. ARGV[i], 'released')
  end
  redis.call('ZREM', KEYS[2], ARGV[i])
end
return 1
