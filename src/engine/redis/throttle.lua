-- Takes one event from the token bucket KEYS[1]: `take` from gcra.lua,
-- which is prepended. ARGV[1] is one event's interval and ARGV[2] the
-- burst tolerance, both in microseconds. Answers 0 when admitted, else the
-- microseconds to wait.
return take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
