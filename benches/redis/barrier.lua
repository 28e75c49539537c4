-- A fan-in barrier in Redis, as teams write it: record the slot's result unless it reported,
-- decrement, and hand the completer every result. Standalone Redis; the barrier key is derived
-- from the number (for the benchmark's random spread), so this is not cluster-safe.
-- ARGV: n (slot n of barrier n % barriers), result, barriers
local n = tonumber(ARGV[1])
local key = 'barrier:' .. (n % tonumber(ARGV[3]))
if redis.call('HSETNX', key .. ':results', n, ARGV[2]) == 0 then
  return -1 -- duplicate
end
local remaining = redis.call('HINCRBY', key, 'remaining', -1)
if remaining == 0 then
  local results = redis.call('HGETALL', key .. ':results')
  redis.call('DEL', key, key .. ':results')
  return results
end
return remaining
