-- Takes one event from the token bucket KEYS[1] (GCRA; see `Bucket` and
-- `gcra` in engine/mod.rs, which this mirrors). ARGV[1] is one event's
-- interval and ARGV[2] the burst tolerance (interval times burst), both in
-- microseconds. The key holds the theoretical arrival time of the next
-- event, in microseconds of Redis's clock, and expires when the bucket is
-- full again. Answers 0 when admitted, else the microseconds to wait.
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call("GET", KEYS[1]) or "") or now
if tat < now then
  tat = now
end
local nxt = tat + interval
local ahead = nxt - now
if ahead > tolerance then
  return ahead - tolerance
end
redis.call("SET", KEYS[1], string.format("%.0f", nxt), "PX", math.floor(ahead / 1000) + 1)
return 0
