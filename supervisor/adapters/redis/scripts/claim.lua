-- Claim the next task for one worker, atomically: the id leaves the pending list and becomes
-- owned by the worker (owner hash) with a lease (lease zset) in the same step, so no task ever
-- exists only in a client's memory. Queues are tried in the order given (the worker's weighted
-- or strict order). Due scheduled and retry tasks are moved to pending first.
-- KEYS: 8 per queue: pending, msg, state, lease, owner, scheduled, retry, paused
-- ARGV: 1 now, 2 lease deadline, 3 worker id, 4 max tasks forwarded per set per call
-- Returns {queue index (1-based), id, envelope or nil} or {0, earliest due time or ''}.
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[4])
local nq = #KEYS / 8
for i = 0, nq - 1 do
  local b = i * 8
  if redis.call('EXISTS', KEYS[b + 8]) == 0 then
    for z = b + 6, b + 7 do
      local due = redis.call('ZRANGE', KEYS[z], '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
      if #due > 0 then
        for _, id in ipairs(due) do
          redis.call('LPUSH', KEYS[b + 1], id)
          redis.call('HSET', KEYS[b + 3], id, 'pending')
        end
        redis.call('ZREM', KEYS[z], unpack(due))
      end
    end
    local id = redis.call('RPOP', KEYS[b + 1])
    if id then
      redis.call('HSET', KEYS[b + 3], id, 'active')
      redis.call('HSET', KEYS[b + 5], id, ARGV[3])
      redis.call('ZADD', KEYS[b + 4], ARGV[2], id)
      return {i + 1, id, redis.call('HGET', KEYS[b + 2], id)}
    end
  end
end
-- Nothing to run: tell the worker when the next scheduled or retry task falls due, so that it
-- blocks no longer than that.
-- The score goes back as Redis wrote it: tostring() of a Lua number keeps 14 digits only, which
-- would report an epoch time a little early.
local earliest, earliest_text = nil, ''
for i = 0, nq - 1 do
  local b = i * 8
  if redis.call('EXISTS', KEYS[b + 8]) == 0 then
    for z = b + 6, b + 7 do
      local first = redis.call('ZRANGE', KEYS[z], 0, 0, 'WITHSCORES')
      if #first > 0 then
        local t = tonumber(first[2])
        if earliest == nil or t < earliest then earliest, earliest_text = t, first[2] end
      end
    end
  end
end
return {0, earliest_text}
