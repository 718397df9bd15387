-- The waiting groups of one queue (core/aggregation.py), and Redis's clock: what the aggregator
-- reads first. Read-only.
-- KEYS: 1 group index zset
-- ARGV: 1 most groups to return (the oldest first)
-- Returns {now, group id, oldest member's time, group id, oldest member's time, ...}
local t = redis.call('TIME')
local out = {t[1] .. '.' .. string.format('%06d', tonumber(t[2]))}
local index = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
for i = 1, #index do out[#out + 1] = index[i] end
return out
