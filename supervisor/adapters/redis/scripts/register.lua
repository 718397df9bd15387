-- Add a queue to the registry set: the part of enqueue.lua that a Redis Cluster cannot run in
-- the same script, because the registry and the queue live in different slots.
-- KEYS: 1 queue registry set
-- ARGV: 1 queue name
return redis.call('SADD', KEYS[1], ARGV[1])
