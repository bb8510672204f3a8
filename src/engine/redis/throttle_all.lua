-- Takes one event from every token bucket in KEYS, or from none:
-- `take_all` from gcra.lua, which is prepended. ARGV holds, for each key in
-- order, one event's interval and the burst tolerance, in microseconds.
-- Answers {0, 0} when admitted, else {microseconds to wait, the 1-based
-- index of the bucket that refused}.
return take_all(KEYS, ARGV, 1)
