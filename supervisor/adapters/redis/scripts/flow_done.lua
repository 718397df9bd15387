-- Record workflow members' terminal outcomes, each once: the join of supervisor/core/flows.py.
-- A node already terminal changes nothing (a member that ran twice counts once). The first
-- outcome decrements its dependents' counters and marks those reaching zero ready, in this same
-- script. Under the 'fail' policy a failure fails the flow and cancels every node not released.
-- KEYS: 1 the flow's hash, 2 its results hash (node -> result), 3 its ready zset
-- ARGV: triplets of node, state (succeeded, failed, canceled, expired), result bytes
-- Returns {nodes counted, nodes made ready, finished (1/0), nodes not counted}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, 0, 0, #ARGV / 3}
end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
local counted, ready, skipped, finished = 0, 0, 0, 0

local function record(node, outcome, result)
  -- A node with a definition and no state yet is waiting (the state is written when it changes).
  local s = redis.call('HGET', KEYS[1], 's:' .. node)
  if (not s) and redis.call('HEXISTS', KEYS[1], 'n:' .. node) == 1 then
    s = 'waiting'
  end
  if (not s) or s == 'succeeded' or s == 'failed' or s == 'canceled' or s == 'expired' then
    skipped = skipped + 1
    return
  end
  counted = counted + 1
  redis.call('HSET', KEYS[1], 's:' .. node, outcome)
  redis.call('HSET', KEYS[2], node, result)
  redis.call('ZREM', KEYS[3], node)
  finished = redis.call('HINCRBY', KEYS[1], 'finished', 1)
  local state = redis.call('HGET', KEYS[1], 'state')
  if outcome ~= 'succeeded' then
    redis.call('HINCRBY', KEYS[1], 'failures', 1)
  end
  if outcome ~= 'succeeded' and state == 'running' and redis.call('HGET', KEYS[1], 'policy') == 'fail' then
    redis.call('HSET', KEYS[1], 'state', 'failed')
    for i = 0, total - 1 do
      local si = redis.call('HGET', KEYS[1], 's:' .. i)
      if (not si) or si == 'waiting' or si == 'ready' then
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
end

for i = 1, #ARGV, 3 do
  record(ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
if counted > 0 and finished >= total then
  local state = redis.call('HGET', KEYS[1], 'state')
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
  return {counted, ready, 1, skipped}
end
return {counted, ready, 0, skipped}
