-- Appends one event to a conversation's log and announces it.
-- keys::lua_log_prelude() (the entry's body field as FIELD) and gcra.lua
-- (`take`) are prepended.
--
-- KEYS: the stream, the dedup hash, the sequence counter, and, for a
-- metered append only, the sender's rate bucket. Every one carries the
-- conversation's hash tag, as does the channel, so on a cluster this is
-- one slot.
--
-- ARGV[1] is the body, ARGV[2] the conversation's bus channel, ARGV[3] the
-- publish command (PUBLISH, or SPUBLISH on a cluster), ARGV[4] the dedup id
-- or "" for none; for a metered append ARGV[5] and ARGV[6] are the
-- bucket's interval and tolerance (see gcra.lua).
--
-- Returns {seq, duplicate, wait}. wait > 0: the bucket refused, for that
-- many microseconds, and nothing was appended. duplicate 1: the dedup id
-- was seen before, seq is its first append's, and nothing was appended or
-- announced. Otherwise the entry was appended as seq and announced as
-- `#<seq>\n<body>` (engine::EntryNotice). %d formats the sequence: plain
-- concatenation would turn large doubles into exponent notation.
if KEYS[4] then
  local wait = take(KEYS[4], tonumber(ARGV[5]), tonumber(ARGV[6]))
  if wait > 0 then return {0, 0, wait} end
end
local dedup = ARGV[4]
if dedup ~= "" then
  local seen = redis.call("HGET", KEYS[2], dedup)
  if seen then return {tonumber(seen), 1, 0} end
end
local seq = string.format("%d", redis.call("INCR", KEYS[3]))
redis.call("XADD", KEYS[1], seq .. "-1", FIELD, ARGV[1])
if dedup ~= "" then redis.call("HSET", KEYS[2], dedup, seq) end
redis.call(ARGV[3], ARGV[2], "#" .. seq .. "\n" .. ARGV[1])
return {tonumber(seq), 0, 0}
