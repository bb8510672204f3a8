-- Adds one to the counter KEYS[1] and answers the new count. The first
-- increment starts the window of ARGV[1] milliseconds; later ones keep it.
-- A counter without an expiry (left by something else) gets one too, so it
-- can never count forever.
local n = redis.call("INCR", KEYS[1])
if n == 1 or redis.call("PTTL", KEYS[1]) == -1 then
  redis.call("PEXPIRE", KEYS[1], ARGV[1])
end
return n
