-- Applies a commit of record writes all-or-nothing. keys::lua_prelude() is
-- prepended: it spells the key names and hash fields.
--
-- ARGV[1] is the key prefix, ARGV[2] the writes as JSON (an array of
-- {op = "put"|"del", k, e, c, o, refs, uniq}, `e` being "absent", "any" or
-- the expected version in decimal), and ARGV[2 + i] the body of write i
-- (empty for deletes). Versions and orders travel as strings because Lua
-- numbers are doubles.
--
-- Returns {"ok"}, or without changing anything one of
-- {"conflict", key, actual_version_or_empty}, {"missing_ref", key},
-- {"in_use", key, referrer...}, {"duplicate", claim, holder}.
local writes = cjson.decode(ARGV[2])
local puts, dels, current = {}, {}, {}

local function contains(list, x)
  for _, y in ipairs(list) do
    if y == x then return true end
  end
  return false
end

local function encode_list(t)
  -- cjson encodes an empty table as an object.
  if #t == 0 then return "[]" end
  return cjson.encode(t)
end

local function decode_list(s)
  if not s then return {} end
  return cjson.decode(s)
end

-- Drops a claim only if this record still holds it: another write of the
-- same commit may have taken it over already.
local function release(claim, enc)
  local k = claim_key(claim)
  if redis.call("GET", k) == enc then redis.call("DEL", k) end
end

for _, w in ipairs(writes) do
  if w.op == "put" then puts[w.k] = w else dels[w.k] = true end
end

-- 1. Expectations.
for _, w in ipairs(writes) do
  local v = redis.call("HGET", record_key(w.k), F_VERSION)
  current[w.k] = v
  if w.e == "absent" then
    if v then return {"conflict", w.k, v} end
  elseif w.e ~= "any" then
    if v ~= w.e then return {"conflict", w.k, v or ""} end
  end
end

-- 2. References exist after the commit.
for _, w in ipairs(writes) do
  if w.op == "put" then
    for _, r in ipairs(w.refs) do
      if not puts[r] and (dels[r] or redis.call("EXISTS", record_key(r)) == 0) then
        return {"missing_ref", r}
      end
    end
  end
end

-- 3. Nothing still references a deleted record.
for _, w in ipairs(writes) do
  if w.op == "del" and current[w.k] then
    local reply = {"in_use", w.k}
    for _, r in ipairs(redis.call("SMEMBERS", back_refs_key(w.k))) do
      local p = puts[r]
      if not dels[r] and not (p and not contains(p.refs, w.k)) then
        table.insert(reply, r)
      end
    end
    if #reply > 2 then return reply end
  end
end

-- 4. Unique claims.
local claimed = {}
for _, w in ipairs(writes) do
  if w.op == "put" then
    for _, c in ipairs(w.uniq) do
      local other = claimed[c]
      if other and other ~= w.k then return {"duplicate", c, other} end
      claimed[c] = w.k
      local h = redis.call("GET", claim_key(c))
      if h and h ~= w.k and not dels[h] then
        local p = puts[h]
        local released = p and not contains(p.uniq, c)
        if not released and redis.call("EXISTS", record_key(h)) == 1 then
          return {"duplicate", c, h}
        end
      end
    end
  end
end

-- Apply.
for i, w in ipairs(writes) do
  local rk = record_key(w.k)
  if w.op == "put" then
    local old = redis.call("HMGET", rk, F_REFS, F_UNIQUE, F_COLLECTION, F_ORDER)
    for _, r in ipairs(decode_list(old[1])) do
      if not contains(w.refs, r) then redis.call("SREM", back_refs_key(r), w.k) end
    end
    for _, r in ipairs(w.refs) do redis.call("SADD", back_refs_key(r), w.k) end
    for _, c in ipairs(decode_list(old[2])) do
      if not contains(w.uniq, c) then release(c, w.k) end
    end
    for _, c in ipairs(w.uniq) do redis.call("SET", claim_key(c), w.k) end
    if old[3] and (old[3] ~= w.c or old[4] ~= w.o) then
      redis.call("ZREM", collection_key(old[3]), old[4])
    end
    redis.call("ZADD", collection_key(w.c), 0, w.o)
    redis.call("HINCRBY", rk, F_VERSION, 1)
    redis.call("HSET", rk, F_BODY, ARGV[2 + i], F_COLLECTION, w.c, F_ORDER, w.o,
      F_REFS, encode_list(w.refs), F_UNIQUE, encode_list(w.uniq))
  elseif current[w.k] then
    local old = redis.call("HMGET", rk, F_REFS, F_UNIQUE, F_COLLECTION, F_ORDER)
    for _, r in ipairs(decode_list(old[1])) do redis.call("SREM", back_refs_key(r), w.k) end
    for _, c in ipairs(decode_list(old[2])) do release(c, w.k) end
    if old[3] then redis.call("ZREM", collection_key(old[3]), old[4]) end
    redis.call("DEL", rk, back_refs_key(w.k))
  end
end
return {"ok"}
