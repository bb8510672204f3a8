-- take(key, interval, tolerance): takes one event from the token bucket
-- `key` (GCRA; see `Bucket` and `gcra` in engine/throttle.rs, which this
-- mirrors). `interval` is one event's share of time and `tolerance` the
-- burst tolerance (interval times burst), both in microseconds. The key
-- holds the theoretical arrival time of the next event, in microseconds of
-- Redis's clock, and expires when the bucket is full again. Answers 0 when
-- admitted, else the microseconds to wait. Prepended to the scripts that
-- take from a bucket (throttle.lua, append.lua).
local function take(key, interval, tolerance)
  local t = redis.call("TIME")
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local tat = tonumber(redis.call("GET", key) or "") or now
  if tat < now then
    tat = now
  end
  local nxt = tat + interval
  local ahead = nxt - now
  if ahead > tolerance then
    return ahead - tolerance
  end
  redis.call("SET", key, string.format("%.0f", nxt), "PX", math.floor(ahead / 1000) + 1)
  return 0
end
