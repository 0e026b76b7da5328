--- JSON for the emulator: the library's own (vidu.json: sorted keys, `json.array` for empty
-- arrays, whole numbers without a fraction), with one difference on input. cjson reads NaN and
-- Infinity, which are not JSON; a body holding one is refused here, as the providers' parsers
-- refuse it, instead of being stored and then failing to encode in a later answer.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local json = require("vidu.json")

local M = {}
for k, v in pairs(json) do M[k] = v end

-- Does decoded value v hold a number JSON cannot write?
local function has_nonfinite(v, depth)
  if type(v) == "number" then return v ~= v or v == math.huge or v == -math.huge end
  if type(v) ~= "table" or depth > 100 then return false end
  for _, x in pairs(v) do
    if has_nonfinite(x, depth + 1) then return true end
  end
  return false
end

--- Decode a JSON text -> value | nil, err (never raises).
function M.decode(s)
  local v, err = json.decode(s)
  if v == nil then return nil, err end
  if has_nonfinite(v, 0) then return nil, "json: NaN and Infinity are not JSON" end
  return v
end

return M
