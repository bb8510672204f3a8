-- Adds ARGV[1] to the newline-separated list of ids in KEYS[1] (once: an
-- id already there moves to the end), keeps the last ARGV[3] of them, and
-- sets the key to expire in ARGV[2] ms. Answers the list's length.
local kept = {}
local current = redis.call("GET", KEYS[1])
if current then
  for id in string.gmatch(current, "[^\n]+") do
    if id ~= ARGV[1] then
      table.insert(kept, id)
    end
  end
end
table.insert(kept, ARGV[1])
local cap = tonumber(ARGV[3])
local first = 1
if #kept > cap then
  first = #kept - cap + 1
end
local list = {}
for i = first, #kept do
  table.insert(list, kept[i])
end
redis.call("SET", KEYS[1], table.concat(list, "\n"), "PX", ARGV[2])
return #list
