--- A small seeded random generator (Park-Miller), identical on Lua 5.1/LuaJIT and 5.4.
-- Every random choice of the emulator goes through one of these so that `--seed` makes a run
-- repeatable: task ids, secrets and probabilistic faults.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local M = {}
M.__index = M

local MOD = 2147483647

--- New generator from a seed (any number or string).
function M.new(seed)
  local s = 0
  if type(seed) == "string" then
    for i = 1, #seed do s = (s * 31 + seed:byte(i)) % MOD end
  else
    s = math.floor(tonumber(seed) or 1) % MOD
  end
  if s <= 0 then s = s + 1234567 end
  local r = setmetatable({ state = s }, M)
  r:next(); r:next()
  return r
end

--- Next integer in [1, MOD-1].
function M:next()
  self.state = (self.state * 48271) % MOD
  return self.state
end

--- Float in [0, 1).
function M:float()
  return (self:next() - 1) / (MOD - 1)
end

--- Integer in [lo, hi].
function M:int(lo, hi)
  return lo + math.floor(self:float() * (hi - lo + 1))
end

--- n random hexadecimal digits.
function M:hex(n)
  local t = {}
  for i = 1, n do t[i] = string.format("%x", self:int(0, 15)) end
  return table.concat(t)
end

--- n random decimal digits (the first not zero).
function M:digits(n)
  local t = { tostring(self:int(1, 9)) }
  for i = 2, n do t[i] = tostring(self:int(0, 9)) end
  return table.concat(t)
end

--- A version-4 style UUID.
function M:uuid()
  local h = self:hex(32)
  local k = self:int(1, 4)
  return string.format("%s-%s-4%s-%s%s-%s", h:sub(1, 8), h:sub(9, 12), h:sub(14, 16),
    ("89ab"):sub(k, k), h:sub(18, 20), h:sub(21, 32))
end

return M
