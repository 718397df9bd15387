-- Store a run-time schedule's definition (see supervisor/core/schedules.py). The definition it
-- replaces is kept beside it, with the moment the new one takes effect (the server's clock plus
-- a delay), so that every supervisor switches at the same tick. All four keys share one slot.
-- KEYS: 1 definitions hash, 2 replaced definitions hash, 3 effective-from hash, 4 version counter
-- ARGV: 1 name, 2 definition, 3 mode ('add', 'update' or 'set'), 4 delay in seconds
-- Returns 1 when stored, 0 when the mode refused it (add: exists; update: missing).
local old = redis.call('HGET', KEYS[1], ARGV[1])
if (ARGV[3] == 'add' and old) or (ARGV[3] == 'update' and not old) then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if old then
  redis.call('HSET', KEYS[2], ARGV[1], old)
  redis.call('HSET', KEYS[3], ARGV[1], string.format('%.6f', now + tonumber(ARGV[4])))
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HSET', KEYS[3], ARGV[1], string.format('%.6f', now))
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[4])
return 1
