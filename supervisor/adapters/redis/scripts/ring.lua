-- Ring a queue's doorbell on a Redis Cluster: push wake-up tokens for idle workers.
-- On one server the state-changing scripts push these tokens themselves; on a cluster the
-- doorbells of every queue live in one slot of their own (see broker.py), so they are rung
-- by this separate call, sent in the same pipeline as the script that made the work.
-- KEYS: 1 doorbell list
-- ARGV: 1 tokens to push (>= 1), 2 cap on the list's length
local tokens = {}
for _ = 1, math.min(tonumber(ARGV[1]), tonumber(ARGV[2])) do tokens[#tokens + 1] = '1' end
redis.call('LPUSH', KEYS[1], unpack(tokens))
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return 1
