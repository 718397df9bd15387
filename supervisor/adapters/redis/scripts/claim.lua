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
--       4 max tasks forwarded per set per call, 5 max batch,
--       6 flow control: one character per queue, '1' when it has limits ('' or absent: none)
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

-- >>> flow control (rate limits and concurrency caps; core/flow.py) >>>>>>>>>>>>>>>>>>>>>>>>>>>>
-- Only queues flagged in ARGV[6] run any of this: a queue without limits costs nothing more.
-- Keys (all in the queue's slot, derived from its pending key 'ns:{q}:pending'): limits (hash
-- scope -> 'count period burst cap'), lanes (zset lane -> when it may start next), lane:<lane>
-- (list of ids, like pending), rate:<lane> (GCRA's TAT), cap:<lane> (zset of holder ids),
-- throttled (hash 'rate <scope>' / 'cap <scope>' -> times a due start was refused: metrics),
-- held (how many ids wait in lanes: the queue's pending count includes them).
-- A lane is 'type:<type>' or 'key:<limit_key>'; the scope 'queue' guards the whole queue.
-- A limited task waits in its lane, so it costs no attempt and blocks nothing behind it.
local limited = ARGV[6] or ''
local flow_due = nil
local ROUTE_LIMIT = 200
local CAP_RECHECK = 0.05
local EPSILON = 0.000001
local queue_limits = {}
local function note_due(t) if flow_due == nil or t < flow_due then flow_due = t end end
-- A queue's limits, read once per call: scope -> {count, period, burst, cap}; has_keys when a
-- 'key:' limit exists (only then is a whole envelope decoded, to read its limit_key).
local function limits_of(p)
  local l = queue_limits[p]
  if l == nil then
    l = {defs = {}, has_keys = false, headers = {}}
    local flat = redis.call('HGETALL', p .. 'limits')
    for j = 1, #flat, 2 do
      if string.sub(flat[j], 1, 7) == 'header:' then
        l.headers[string.sub(flat[j], 8)] = flat[j + 1]
      else
        local d = {}
        for w in string.gmatch(flat[j + 1], '%S+') do d[#d + 1] = tonumber(w) end
        l.defs[flat[j]] = d
        if string.sub(flat[j], 1, 4) == 'key:' then l.has_keys = true end
      end
    end
    queue_limits[p] = l
  end
  return l
end
local function def_of(p, scope) return limits_of(p).defs[scope] end
-- A MessagePack str at pos: its text and the position after it (nil: not a str).
local function read_str(s, pos)
  local b = string.byte(s, pos)
  if not b then return nil end
  if b >= 0xa0 and b <= 0xbf then return string.sub(s, pos + 1, pos + b - 0xa0), pos + 1 + b - 0xa0 end
  if b == 0xd9 then
    local n = string.byte(s, pos + 1) or 0
    return string.sub(s, pos + 2, pos + 1 + n), pos + 2 + n
  end
  if b == 0xda then
    local n = (string.byte(s, pos + 1) or 0) * 256 + (string.byte(s, pos + 2) or 0)
    return string.sub(s, pos + 3, pos + 2 + n), pos + 3 + n
  end
  return nil
end
-- The task type, read from the envelope's first two fields (id, type: msgspec writes a struct's
-- fields in order) without decoding the payload; nil when the bytes are laid out otherwise.
local function type_of(envelope)
  local b = string.byte(envelope, 1)
  local pos
  if b and b >= 0x80 and b <= 0x8f then pos = 2 elseif b == 0xde then pos = 4 else return nil end
  local k, v
  k, pos = read_str(envelope, pos)
  if k ~= 'id' then return nil end
  v, pos = read_str(envelope, pos)
  if not v then return nil end
  k, pos = read_str(envelope, pos)
  if k ~= 'type' then return nil end
  return (read_str(envelope, pos))
end
local function scope_of_lane(lane)
  if string.sub(lane, 1, 4) == 'key:' then return 'key:' .. string.match(lane, '^key:([^:]+)') end
  return lane
end
local function rate_ok(rk, d)
  if d[1] <= 0 then return true, nil end
  local t = d[2] / d[1]
  local tat = tonumber(redis.call('GET', rk) or '0')
  if tat < now then tat = now end
  local at = tat - (d[3] - 1) * t
  if at > now + EPSILON then return false, at end  -- TATs are kept to the microsecond
  return true, tat + t
end
local function take(rk, ck, d, new_tat, id)
  if new_tat then
    redis.call('SET', rk, string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
  end
  if d[4] > 0 then redis.call('ZADD', ck, now, id) end
end
-- A holder counts while its task's lease runs: completion, retry, archive, give-back and
-- recovery all drop the lease, and a dead worker's lease runs out, so no slot leaks.
local function cap_ok(ck, lease, d)
  if d[4] <= 0 then return true end
  local live = 0
  for _, h in ipairs(redis.call('ZRANGE', ck, 0, -1)) do
    local s = redis.call('ZSCORE', lease, h)
    if s and tonumber(s) > now then live = live + 1 else redis.call('ZREM', ck, h) end
  end
  return live < d[4]
end
local function lane_of(p, envelope)
  local t = nil
  if not limits_of(p).has_keys then t = type_of(envelope) end
  if t == nil then
    local ok, m = pcall(cmsgpack.unpack, envelope)
    if not ok or type(m) ~= 'table' then return nil end
    local lk = m['limit_key']
    if type(lk) == 'string' and lk ~= '' then
      local group = string.match(lk, '^([^:]+)')
      if group and def_of(p, 'key:' .. group) then return 'key:' .. lk end
    end
    local headers = m['headers']
    if type(headers) == 'table' then  -- a key named by a header (a key limit's header=)
      for group, name in pairs(limits_of(p).headers) do
        local v = headers[name]
        if type(v) == 'string' and v ~= '' and def_of(p, 'key:' .. group) then return 'key:' .. group .. ':' .. v end
      end
    end
    t = m['type']
  end
  if type(t) == 'string' and def_of(p, 'type:' .. t) then return 'type:' .. t end
  return nil
end
-- A lane whose limit is gone: its tasks go back to the head of the pending list.
local function release_lane(p, pending, lane)
  for _ = 1, 1000 do
    if not redis.call('LMOVE', p .. 'lane:' .. lane, pending, 'LEFT', 'RIGHT') then
      redis.call('ZREM', p .. 'lanes', lane)
      return
    end
    redis.call('DECR', p .. 'held')
  end
end
-- The oldest task of a lane that is still pending: one deleted (or otherwise ended) while it
-- waited is dropped here, at most 100 per call (nil: none found).
local function pop_live(p, b, lane)
  for _ = 1, 100 do
    local id = redis.call('RPOP', p .. 'lane:' .. lane)
    if not id then return nil end
    redis.call('DECR', p .. 'held')
    if redis.call('HGET', KEYS[b + 3], id) == 'pending' then return id end
  end
  return nil
end
-- The first lane whose next start is due and allowed: one task from it (nil: none).
local function from_lanes(p, b, qd, q_tat)
  for _, lane in ipairs(redis.call('ZRANGE', p .. 'lanes', '-inf', now + EPSILON, 'BYSCORE', 'LIMIT', 0, 20)) do
    local d = def_of(p, scope_of_lane(lane))
    if not d then
      release_lane(p, KEYS[b + 1], lane)
    elseif redis.call('LLEN', p .. 'lane:' .. lane) == 0 then
      redis.call('ZREM', p .. 'lanes', lane)
    else
      local ok, x = rate_ok(p .. 'rate:' .. lane, d)
      if not ok then
        redis.call('ZADD', p .. 'lanes', x, lane)
        redis.call('HINCRBY', p .. 'throttled', 'rate ' .. scope_of_lane(lane), 1)
      elseif not cap_ok(p .. 'cap:' .. lane, KEYS[b + 4], d) then
        redis.call('ZADD', p .. 'lanes', now + CAP_RECHECK, lane)
        redis.call('HINCRBY', p .. 'throttled', 'cap ' .. scope_of_lane(lane), 1)
      else
        local id = pop_live(p, b, lane)
        if id then
          take(p .. 'rate:' .. lane, p .. 'cap:' .. lane, d, x, id)
          if qd then take(p .. 'rate:queue', p .. 'cap:queue', qd, q_tat, id) end
          return {id}
        end
      end
    end
  end
  return nil
end
local function claim_limited(i, batch)
  local b = i * 8
  local p = string.sub(KEYS[b + 1], 1, -8)
  local qd = def_of(p, 'queue')
  local q_tat = nil
  if qd then
    local ok, x = rate_ok(p .. 'rate:queue', qd)
    if not ok then
      redis.call('HINCRBY', p .. 'throttled', 'rate queue', 1)
      note_due(x)
      return nil
    end
    if not cap_ok(p .. 'cap:queue', KEYS[b + 4], qd) then
      redis.call('HINCRBY', p .. 'throttled', 'cap queue', 1)
      note_due(now + CAP_RECHECK)
      return nil
    end
    q_tat = x
  end
  local got = from_lanes(p, b, qd, q_tat)
  if got then return got end
  local want = qd and 1 or batch
  -- Popped as many at a time as are still wanted; the envelopes read to route them go back with
  -- the ids handed out, so a task of no limit costs one read of its envelope, as elsewhere.
  local out, envelopes, scanned = {}, {}, 0
  while #out < want and scanned < ROUTE_LIMIT do
    local ids = redis.call('RPOP', KEYS[b + 1], math.min(want - #out, ROUTE_LIMIT - scanned))
    if not ids then break end
    for _, id in ipairs(ids) do
      scanned = scanned + 1
      local envelope = redis.call('HGET', KEYS[b + 2], id)
      local lane = envelope and lane_of(p, envelope)
      if lane then
        redis.call('LPUSH', p .. 'lane:' .. lane, id)
        redis.call('INCR', p .. 'held')
        redis.call('ZADD', p .. 'lanes', 'NX', now, lane)
      else
        out[#out + 1] = id
        envelopes[id] = envelope
      end
    end
  end
  if #out > 0 then
    if qd then take(p .. 'rate:queue', p .. 'cap:queue', qd, q_tat, out[1]) end
    return out, envelopes
  end
  if scanned > 0 then
    got = from_lanes(p, b, qd, q_tat)  -- the tasks just routed may start now
    if got then return got end
  end
  if scanned >= ROUTE_LIMIT then note_due(now) end
  local first = redis.call('ZRANGE', p .. 'lanes', 0, 0, 'WITHSCORES')
  if #first > 0 then note_due(tonumber(first[2])) end
  return nil
end
-- <<< flow control <<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<

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
    local ids, read = nil, nil
    if string.byte(limited, i + 1) == 49 then  -- '1': flow control
      ids, read = claim_limited(i, batch_size(i))
    elseif redis.call('LLEN', KEYS[b + 1]) > 0 then
      ids = redis.call('RPOP', KEYS[b + 1], batch_size(i))
    end
    if ids then
      local out = {i + 1}
      for _, id in ipairs(ids) do
        redis.call('HSET', KEYS[b + 3], id, 'active')
        redis.call('HSET', KEYS[b + 5], id, ARGV[3])
        redis.call('ZADD', KEYS[b + 4], lease_until, id)
        out[#out + 1] = id
        out[#out + 1] = (read and read[id]) or redis.call('HGET', KEYS[b + 2], id) or false
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
if flow_due and (earliest == nil or flow_due < earliest) then earliest_text = string.format('%.6f', flow_due) end
return {0, earliest_text, now_text}
