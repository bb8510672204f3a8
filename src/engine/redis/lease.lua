-- Takes or renews the lease KEYS[1] for the holder ARGV[1], for ARGV[2]
-- milliseconds. Answers -1 when the caller holds it now; otherwise the
-- milliseconds the other holder's lease still runs (0 when it has no
-- expiry, which only something else could have left: it is not renewed
-- here, the caller retries).
local held = redis.call("GET", KEYS[1])
if not held or held == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return -1
end
local left = redis.call("PTTL", KEYS[1])
if left < 0 then
  return 0
end
return left
