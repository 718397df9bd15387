-- Claim the next task for one worker, atomically: the id leaves the pending list and becomes
-- owned by the worker (owner hash) with a lease (lease zset) in the same step, so no task ever
-- exists only in a client's memory. Queues are tried in the order given (the worker's weighted
-- or strict order). Due scheduled and retry tasks are moved to pending first.
--
-- Batches: when the chosen queue is the only one in the list with work and it is deep, up to
-- ARGV[5] tasks are claimed at once (an eighth of its length, at least one), all owned and leased
-- like a single one. While several queues have work, one task per claim keeps the weights exact;
-- a shallow queue is shared one task at a time between idle workers.
-- Time is Redis's own (TIME), not the caller's: every host then agrees on when a lease ends, so a
-- host whose clock runs ahead cannot take over tasks that are still being renewed.
-- KEYS: 8 per queue: pending, msg, state, lease, owner, scheduled, retry, paused
-- ARGV: 1 now ('' = Redis's clock), 2 lease duration in seconds, 3 worker id,
--       4 max tasks forwarded per set per call, 5 max batch
-- Returns {queue index (1-based), id, envelope or false, id, envelope...}, or when there is nothing
-- to claim {0, earliest due time or '', now}.
local now_text = ARGV[1]
if now_text == '' then
  local t = redis.call('TIME')
  now_text = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end
local now = tonumber(now_text)
local lease_until = now + tonumber(ARGV[2])
local limit = tonumber(ARGV[4])
local max_batch = tonumber(ARGV[5] or '1')
local nq = #KEYS / 8

local function batch_size(i)
  if max_batch <= 1 then return 1 end
  for j = 0, nq - 1 do
    if j ~= i and redis.call('EXISTS', KEYS[j * 8 + 8]) == 0 and redis.call('LLEN', KEYS[j * 8 + 1]) > 0 then
      return 1
    end
  end
  local n = math.floor(redis.call('LLEN', KEYS[i * 8 + 1]) / 8)
  if n < 1 then return 1 end
  if n > max_batch then return max_batch end
  return n
end

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
    if redis.call('LLEN', KEYS[b + 1]) > 0 then
      local ids = redis.call('RPOP', KEYS[b + 1], batch_size(i))
      local out = {i + 1}
      for _, id in ipairs(ids) do
        redis.call('HSET', KEYS[b + 3], id, 'active')
        redis.call('HSET', KEYS[b + 5], id, ARGV[3])
        redis.call('ZADD', KEYS[b + 4], lease_until, id)
        out[#out + 1] = id
        out[#out + 1] = redis.call('HGET', KEYS[b + 2], id) or false
      end
      return out
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
return {0, earliest_text, now_text}
