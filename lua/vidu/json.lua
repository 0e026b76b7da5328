--- JSON for request and response bodies, on lua-cjson.
--
-- Decoding is cjson's, for speed (thousands of poll answers). Encoding walks tables in Lua
-- and lets cjson format the leaves, because lua-cjson 2.1 cannot be told that an empty table
-- is an array: `json.array{}` marks one, and `json.object{}` forces an object.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local cjson_mod = require("cjson")
-- A private instance so our settings never change the host's own cjson.
local cjson = cjson_mod.new and cjson_mod.new() or cjson_mod

local json = {}

--- The value decoded JSON null becomes (compare with ==).
json.null = cjson.null

local ARRAY = { __name = "vidu.json.array" }
local OBJECT = { __name = "vidu.json.object" }

--- Marks `t` (default {}) to be encoded as a JSON array, even when empty. Returns t.
function json.array(t) return setmetatable(t or {}, ARRAY) end

--- Marks `t` (default {}) to be encoded as a JSON object, even when empty. Returns t.
function json.object(t) return setmetatable(t or {}, OBJECT) end

local encode_value

-- An array is a table with keys 1..n exactly (n > 0), or one marked with json.array.
local function array_length(t)
  local mt = getmetatable(t)
  if mt == ARRAY then return #t end
  if mt == OBJECT then return nil end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then return nil end
    if k > n then n = k end
  end
  if n == 0 then return nil end
  -- Sparse tables are objects in cjson too, but we refuse them: a hole is usually a bug.
  for i = 1, n do
    if t[i] == nil then error("json: sparse array (hole at index " .. i .. ")", 0) end
  end
  return n
end

local function encode_table(t, out, depth)
  if depth > 100 then error("json: nesting deeper than 100 (a cycle?)", 0) end
  local mt = getmetatable(t)
  local hook = type(mt) == "table" and rawget(mt, "__json") or nil
  if hook then
    out[#out + 1] = hook(t)
    local found = out.found
    if found then found[#found + 1] = t end
    return
  end
  local n = array_length(t)
  if n then
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = "," end
      encode_value(t[i], out, depth + 1)
    end
    out[#out + 1] = "]"
    return
  end
  -- Sorted keys: the same table always gives the same bytes (logs and tests compare them).
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then
      error("json: object key must be a string, got " .. type(k), 0)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = cjson.encode(k)
    out[#out + 1] = ":"
    encode_value(t[k], out, depth + 1)
  end
  out[#out + 1] = "}"
end

encode_value = function(v, out, depth)
  local tv = type(v)
  if tv == "table" then
    encode_table(v, out, depth)
  elseif tv == "string" then
    out[#out + 1] = cjson.encode(v)
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      error("json: cannot encode " .. tostring(v), 0)
    end
    -- Integral values print without exponent or fraction (a seed of 2^31 must stay exact).
    if v % 1 == 0 and v > -2^53 and v < 2^53 then
      out[#out + 1] = string.format("%d", v)
    else
      out[#out + 1] = string.format("%.17g", v)
    end
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif v == cjson.null or v == nil then
    out[#out + 1] = "null"
  else
    error("json: cannot encode a " .. tv, 0)
  end
end

--- Encodes a Lua value to a JSON string. Raises on values JSON cannot hold (functions,
-- NaN, sparse arrays, non-string keys): those are programming mistakes.
-- A table whose metatable has a `__json` function is written as the JSON text that function
-- returns for it (as is, unchecked); with `found` (an array), each such table is appended to
-- it in the order of the text (vidu.http uses this for bodies with a streamed image).
function json.encode(v, found)
  local out = { found = found }
  encode_value(v, out, 0)
  return table.concat(out)
end

-- lua-cjson 2.1 decodes every number as a float on Lua 5.3+, so 2 would print as "2.0"
-- (a queue position, a credit count). Whole numbers become integers again there; on 5.1 and
-- LuaJIT there is nothing to do.
local tointeger = math.tointeger
local function integers(v, depth)
  if depth > 100 then return v end
  for k, x in pairs(v) do
    local tx = type(x)
    if tx == "number" then
      local i = tointeger(x)
      if i then v[k] = i end
    elseif tx == "table" then
      integers(x, depth + 1)
    end
  end
  return v
end

--- Decodes a JSON string: value | nil, message.
function json.decode(s)
  if type(s) ~= "string" then return nil, "json: expected a string, got " .. type(s) end
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, "json: " .. tostring(v) end
  if tointeger then
    if type(v) == "table" then
      integers(v, 0)
    elseif type(v) == "number" then
      v = tointeger(v) or v
    end
  end
  return v
end

return json
