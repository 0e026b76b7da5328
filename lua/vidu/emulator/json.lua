--- JSON for the emulator: cjson decodes; a small encoder writes what providers write.
--
-- The encoder knows arrays from objects by a marker (`json.array(t)`) or a non-empty sequence,
-- writes integral numbers without a fraction (cjson decodes 5 as 5.0 on Lua 5.4), and sorts
-- object keys so answers are stable from run to run.
local cjson = require("cjson")

local M = {}

M.null = cjson.null
local ARRAY = {}

--- Mark a table as a JSON array (needed for empty arrays).
function M.array(t)
  return setmetatable(t or {}, ARRAY)
end

--- Decode a JSON text -> value | nil, err (never raises).
function M.decode(s)
  if type(s) ~= "string" then return nil, "not a string" end
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, tostring(v) end
  return v
end

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t",
}
local function esc_char(c)
  return escapes[c] or string.format("\\u%04x", c:byte())
end
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', esc_char) .. '"'
end

local function is_array(t)
  if getmetatable(t) == ARRAY then return true end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

local encode_value

local function encode_table(t, out, depth)
  if depth > 64 then error("json: nesting too deep") end
  if is_array(t) then
    out[#out + 1] = "["
    for i = 1, #t do
      if i > 1 then out[#out + 1] = "," end
      encode_value(t[i], out, depth + 1)
    end
    out[#out + 1] = "]"
  else
    local keys = {}
    for k in pairs(t) do
      keys[#keys + 1] = tostring(k)
    end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = quote(k)
      out[#out + 1] = ":"
      local v = t[k]
      if v == nil then v = t[tonumber(k)] end
      encode_value(v, out, depth + 1)
    end
    out[#out + 1] = "}"
  end
end

encode_value = function(v, out, depth)
  local tv = type(v)
  if tv == "string" then
    out[#out + 1] = quote(v)
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      out[#out + 1] = "null"
    elseif v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
      out[#out + 1] = string.format("%.0f", v)
    else
      out[#out + 1] = string.format("%.14g", v)
    end
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif v == nil or v == cjson.null then
    out[#out + 1] = "null"
  elseif tv == "table" then
    encode_table(v, out, depth)
  else
    error("json: cannot encode a " .. tv)
  end
end

--- Encode a Lua value as JSON text.
function M.encode(v)
  local out = {}
  encode_value(v, out, 0)
  return table.concat(out)
end

return M
