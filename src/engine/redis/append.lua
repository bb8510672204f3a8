-- Appends one event to a conversation's log. keys::lua_log_prelude() is
-- prepended: it spells the entry's body field as FIELD.
--
-- KEYS: the stream, the dedup hash, the sequence counter. ARGV[1] is the
-- body, ARGV[2] the dedup id when there is one.
--
-- Returns {seq, duplicate} with duplicate 1 when the dedup id was seen
-- before (and nothing was appended). %d formats the sequence: plain
-- concatenation would turn large doubles into exponent notation.
local dedup = ARGV[2]
if dedup then
  local seen = redis.call("HGET", KEYS[2], dedup)
  if seen then return {tonumber(seen), 1} end
end
local seq = redis.call("INCR", KEYS[3])
redis.call("XADD", KEYS[1], string.format("%d-1", seq), FIELD, ARGV[1])
if dedup then redis.call("HSET", KEYS[2], dedup, seq) end
return {seq, 0}
