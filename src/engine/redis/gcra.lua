-- The token buckets (GCRA; see `Bucket` and `gcra` in engine/throttle.rs,
-- which this mirrors). A bucket's key holds the theoretical arrival time of
-- its next event, in microseconds of Redis's clock, and expires when the
-- bucket is full again. Prepended to the scripts that take from a bucket
-- (throttle.lua, throttle_all.lua, append.lua).

-- take_all(keys, args, first): one event from every bucket in `keys`, or
-- from none. The bucket keys[i] has interval args[first + 2i - 2] (one
-- event's share of time) and tolerance args[first + 2i - 1] (the interval
-- times the burst), both in microseconds. Answers {0, 0} when every bucket
-- admitted (and each took one), else {wait, i}: the longest wait among the
-- buckets that refused and the (1-based) index of that bucket; none took
-- anything.
local function take_all(keys, args, first)
  local t = redis.call("TIME")
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local wait = 0
  local by = 0
  local next_of = {}
  for i, key in ipairs(keys) do
    local interval = tonumber(args[first + 2 * i - 2])
    local tolerance = tonumber(args[first + 2 * i - 1])
    local tat = tonumber(redis.call("GET", key) or "") or now
    if tat < now then
      tat = now
    end
    local nxt = tat + interval
    if nxt - now - tolerance > wait then
      wait = nxt - now - tolerance
      by = i
    end
    next_of[i] = nxt
  end
  if wait > 0 then
    return {wait, by}
  end
  for i, key in ipairs(keys) do
    local ahead = next_of[i] - now
    redis.call("SET", key, string.format("%.0f", next_of[i]), "PX", math.floor(ahead / 1000) + 1)
  end
  return {0, 0}
end

-- take(key, interval, tolerance): one event from the one bucket `key`.
-- Answers 0 when admitted, else the microseconds to wait.
local function take(key, interval, tolerance)
  return take_all({key}, {interval, tolerance}, 1)[1]
end
