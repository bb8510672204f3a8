-- Removes the lease KEYS[1] if the holder ARGV[1] holds it; answers 1 when
-- it did, 0 when the lease was gone or another holder's.
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
