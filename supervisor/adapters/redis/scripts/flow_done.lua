-- Record workflow members' terminal outcomes, each once: the join of supervisor/core/flows.py.
-- A node already terminal changes nothing (a member that ran twice counts once). The first
-- outcome decrements its dependents' counters and marks those reaching zero ready, in this same
-- script. A failure (failed, canceled, expired) is its scope's (the innermost group holding the
-- node, else the flow: field 'scopes', see compile_flow); under 'fail' the scope fails: its
-- member range's unfinished nodes are canceled (the flow's: all of them, and the flow is failed)
-- and the failure goes up to the enclosing scope. A node already released (its task is in a
-- queue) cannot be canceled from here: it goes into the cancel set, for the caller to cancel in
-- its queue (supervisor/flows.py Flows.cancel_members); its outcome then comes back through here.
-- A node's state is its 's:<node>' field, but for two cases that spare a chord's members a field
-- each. A node without one is waiting, or, a root (no 'w:<node>'), ready while the ready zset
-- holds 'roots' and released after. And a root of 0 .. rk-1 (roots that share their dependents,
-- 'rd') that succeeded has none: the results hash holds exactly the finished nodes' results, and
-- its result says it finished. A dependent's counter is decremented once per call, by as many of
-- its predecessors as finished in it (a chord's members share one callback).
-- KEYS: 1 the flow's hash, 2 its results hash (node -> result), 3 its ready zset, 4 its cancel set
-- ARGV: 1 the marker stored as the result of a node canceled here, 2 the nodes ('3,4,9'), 3 their
--       states ('succeeded,failed': succeeded, failed, canceled, expired; '' when all succeeded),
--       then their results' bytes, one each
-- Returns {nodes counted, nodes made ready, finished (1/0), nodes not counted, nodes to cancel}.
local head = redis.call('HMGET', KEYS[1], 'total', 'finished', 'state', 'rk', 'rd')
if not head[1] then  -- the flow is gone
  return {0, 0, 0, #ARGV - 3, 0}
end
local total = tonumber(head[1])
local finished = tonumber(head[2] or '0')
local state = head[3]  -- the flow's state, kept equal to its field (fail_scope writes both)
local root_count = tonumber(head[4] or '0')
local root_dependents = {}
for dep in string.gmatch(head[5] or '', '[^,]+') do root_dependents[#root_dependents + 1] = dep end
local marker = ARGV[1]
local counted, ready, skipped, to_cancel = 0, 0, 0, 0
local terminal = {succeeded = true, failed = true, canceled = true, expired = true}
local cancels = redis.call('EXISTS', KEYS[4]) == 1  -- the cancel set has members
local pending = {}  -- dependent -> predecessors finished in this call
local dependents = {}  -- the keys of pending, in order

local now = nil
local function store_time()
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return now
end

local roots_ready = nil
local function roots_released()
  if roots_ready == nil then
    roots_ready = redis.call('ZSCORE', KEYS[3], 'roots') ~= false
  end
  return not roots_ready
end

local function add_pending(dep)
  if not pending[dep] then
    pending[dep] = 0
    dependents[#dependents + 1] = dep
  end
  pending[dep] = pending[dep] + 1
end

local function release_dependents(node)
  if state ~= 'running' then return end
  if node < root_count then
    for _, dep in ipairs(root_dependents) do add_pending(dep) end
    return
  end
  local deps = redis.call('HGET', KEYS[1], 'd:' .. node)
  if deps then
    for dep in string.gmatch(deps, '[^,]+') do add_pending(dep) end
  end
end

-- The counters, once the outcomes are in: a dependent canceled meanwhile (its scope failed)
-- has a state, and is never made ready; in a failed flow, nothing is.
local function decrement_dependents()
  if state ~= 'running' then return end
  for _, dep in ipairs(dependents) do
    if redis.call('HINCRBY', KEYS[1], 'w:' .. dep, -pending[dep]) == 0 and not redis.call('HGET', KEYS[1], 's:' .. dep) then
      redis.call('HSET', KEYS[1], 's:' .. dep, 'ready')
      redis.call('ZADD', KEYS[3], store_time(), dep)
      ready = ready + 1
    end
  end
end

-- A node's state, read from the store (see the top).
local function state_of(i)
  local s = redis.call('HGET', KEYS[1], 's:' .. i)
  if s then return s end
  if i < root_count and redis.call('HEXISTS', KEYS[2], i) == 1 then return 'succeeded' end
  if redis.call('HEXISTS', KEYS[1], 'w:' .. i) == 0 and roots_released() then return 'released' end
  return nil
end

-- Cancel the unfinished nodes of [lo, hi): those not in a queue yet end here, released ones
-- join the cancel set. What depends on the ended ones from outside the range goes on.
local function cancel_range(lo, hi)
  local ended = {}
  for i = lo, hi - 1 do
    local s = state_of(i)
    if (not s) or s == 'ready' then
      redis.call('HSET', KEYS[1], 's:' .. i, 'canceled')
      redis.call('HSET', KEYS[2], i, marker)
      if s == 'ready' then redis.call('ZREM', KEYS[3], i) end
      finished = finished + 1
      ended[#ended + 1] = i
    elseif s == 'released' and redis.call('SADD', KEYS[4], i) == 1 then
      to_cancel = to_cancel + 1
      cancels = true
    end
  end
  for _, i in ipairs(ended) do release_dependents(i) end
end

local scopes = nil
local function load_scopes()
  if scopes then return scopes end
  scopes = {}
  local raw = redis.call('HGET', KEYS[1], 'scopes') or ''
  for p, up, lo, hi, mlo, mhi in string.gmatch(raw, '(%a+),(%d+),(%d+),(%d+),(%d+),(%d+)') do
    scopes[#scopes + 1] = {p, tonumber(up), tonumber(lo), tonumber(hi), tonumber(mlo), tonumber(mhi)}
  end
  return scopes
end

-- The innermost group holding the node (0: none, the flow). Depth first, so the last one
-- holding it is the innermost, and none after one starting past it can hold it.
local function scope_of(node)
  local found = 0
  for id, s in ipairs(load_scopes()) do
    if s[3] > node then break end
    if node < s[4] then found = id end
  end
  return found
end

local function fail_scope(id)
  while true do
    if id == 0 then
      if redis.call('HGET', KEYS[1], 'policy') == 'fail' then
        redis.call('HSET', KEYS[1], 'state', 'failed')
        state = 'failed'
        cancel_range(0, total)
      end
      return
    end
    local s = scopes[id]
    -- 'f:<id>': failed already, and its failure went up then
    if s[1] ~= 'fail' or redis.call('HSETNX', KEYS[1], 'f:' .. id, '1') == 0 then return end
    cancel_range(s[5], s[6])
    id = s[2]
  end
end

local function record(arg, outcome, result)
  -- In the cancel set: its cancel was asked here, so a 'canceled' outcome is no failure of its own.
  local asked = cancels and redis.call('SREM', KEYS[4], arg) == 1
  local node = tonumber(arg)
  if (not node) or node < 0 or node >= total or node % 1 ~= 0 then
    skipped = skipped + 1
    return
  end
  if node < root_count then
    -- one of the roots that share their dependents: no state field but once it ended otherwise
    if redis.call('HSETNX', KEYS[2], node, result) == 0 then
      skipped = skipped + 1
      return
    end
    if outcome ~= 'succeeded' then redis.call('HSET', KEYS[1], 's:' .. node, outcome) end
  else
    local s = redis.call('HGET', KEYS[1], 's:' .. node)
    if s and terminal[s] then
      skipped = skipped + 1
      return
    end
    redis.call('HSET', KEYS[1], 's:' .. node, outcome)
    redis.call('HSET', KEYS[2], node, result)
    if s == 'ready' then redis.call('ZREM', KEYS[3], node) end
  end
  counted = counted + 1
  finished = finished + 1
  if outcome ~= 'succeeded' and not (asked and outcome == 'canceled') then
    redis.call('HINCRBY', KEYS[1], 'failures', 1)
    if state == 'running' then
      fail_scope(scope_of(node))
    end
  end
  release_dependents(node)
end

local outcomes = {}
for outcome in string.gmatch(ARGV[3], '[^,]+') do outcomes[#outcomes + 1] = outcome end
local i = 0
for node in string.gmatch(ARGV[2], '[^,]+') do
  i = i + 1
  record(node, outcomes[i] or 'succeeded', ARGV[3 + i])
end
decrement_dependents()
if counted > 0 then
  redis.call('HSET', KEYS[1], 'finished', finished)
end
if counted > 0 and finished >= total then
  if state == 'running' then
    if tonumber(redis.call('HGET', KEYS[1], 'failures') or '0') > 0 then
      state = 'completed_with_failures'
    else
      state = 'succeeded'
    end
    redis.call('HSET', KEYS[1], 'state', state)
  end
  redis.call('HSET', KEYS[1], 'finished_at', string.format('%.6f', store_time()))
  local keep = math.max(1, math.floor(tonumber(redis.call('HGET', KEYS[1], 'retention') or '86400')))
  redis.call('EXPIRE', KEYS[1], keep)
  redis.call('EXPIRE', KEYS[2], keep)
  redis.call('DEL', KEYS[3], KEYS[4])
  return {counted, ready, 1, skipped, to_cancel}
end
return {counted, ready, 0, skipped, to_cancel}
