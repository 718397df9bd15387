-- Record a workflow member's terminal outcome, once: the join of supervisor/core/flows.py.
-- A node already terminal changes nothing (a member that ran twice counts once). The first
-- outcome decrements its dependents' counters and marks those reaching zero ready, in this same
-- script. Under the 'fail' policy a failure fails the flow and cancels every node not released.
-- KEYS: 1 the flow's hash, 2 its results hash (node -> result), 3 its ready zset
-- ARGV: 1 node, 2 state (succeeded, failed, canceled, expired), 3 result bytes
-- Returns {counted (1/0, -1 unknown flow), nodes made ready, finished (1/0)}.
local node = ARGV[1]
local s = redis.call('HGET', KEYS[1], 's:' .. node)
if not s then
  return {-1, 0, 0}
end
if s == 'succeeded' or s == 'failed' or s == 'canceled' or s == 'expired' then
  return {0, 0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[1], 's:' .. node, ARGV[2])
redis.call('HSET', KEYS[2], node, ARGV[3])
redis.call('ZREM', KEYS[3], node)
local finished = redis.call('HINCRBY', KEYS[1], 'finished', 1)
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
local state = redis.call('HGET', KEYS[1], 'state')
local ready = 0
if ARGV[2] ~= 'succeeded' then
  redis.call('HINCRBY', KEYS[1], 'failures', 1)
end
if ARGV[2] ~= 'succeeded' and state == 'running' and redis.call('HGET', KEYS[1], 'policy') == 'fail' then
  state = 'failed'
  redis.call('HSET', KEYS[1], 'state', state)
  for i = 0, total - 1 do
    local si = redis.call('HGET', KEYS[1], 's:' .. i)
    if si == 'waiting' or si == 'ready' then
      redis.call('HSET', KEYS[1], 's:' .. i, 'canceled')
      finished = finished + 1
    end
  end
  redis.call('HSET', KEYS[1], 'finished', finished)
  redis.call('DEL', KEYS[3])
elseif state == 'running' then
  local deps = redis.call('HGET', KEYS[1], 'd:' .. node)
  if deps then
    for dep in string.gmatch(deps, '[^,]+') do
      if redis.call('HINCRBY', KEYS[1], 'w:' .. dep, -1) == 0 then
        redis.call('HSET', KEYS[1], 's:' .. dep, 'ready')
        redis.call('ZADD', KEYS[3], now, dep)
        ready = ready + 1
      end
    end
  end
end
if finished >= total then
  if state == 'running' then
    if tonumber(redis.call('HGET', KEYS[1], 'failures') or '0') > 0 then
      state = 'completed_with_failures'
    else
      state = 'succeeded'
    end
    redis.call('HSET', KEYS[1], 'state', state)
  end
  redis.call('HSET', KEYS[1], 'finished_at', string.format('%.6f', now))
  local keep = math.max(1, math.floor(tonumber(redis.call('HGET', KEYS[1], 'retention') or '86400')))
  redis.call('EXPIRE', KEYS[1], keep)
  redis.call('EXPIRE', KEYS[2], keep)
  redis.call('DEL', KEYS[3])
  return {1, ready, 1}
end
return {1, ready, 0}
