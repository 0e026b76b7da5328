--- Routes: (method, path template) -> handler(req, res, captures...). A template is a literal
-- path where each "{}" captures one path segment: "/ent/v2/tasks/{}/creations".
-- Routes are bucketed by the first path segment so a lookup tries only a handful of patterns.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local M = {}
M.__index = M

--- A new, empty router.
function M.new()
  return setmetatable({ buckets = {}, any = {} }, M)
end

local function to_pattern(template)
  local parts = {}
  local i = 1
  while true do
    local s, e = template:find("{}", i, true)
    local lit = template:sub(i, (s or 0) - 1)
    if not s then lit = template:sub(i) end
    parts[#parts + 1] = (lit:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
    if not s then break end
    parts[#parts + 1] = "([^/]+)"
    i = e + 1
  end
  return "^" .. table.concat(parts) .. "$"
end
M.to_pattern = to_pattern

--- Add a route for a path template.
function M:add(method, template, fn)
  local seg = template:match("^/([^/{]*)/") or template:match("^/([^/{]*)$")
  local r = { method = method, pattern = to_pattern(template), fn = fn,
    captures = template:find("{}", 1, true) }
  local list = seg and seg ~= "" and self.buckets[seg] or self.any
  if seg and seg ~= "" and not self.buckets[seg] then
    list = {}
    self.buckets[seg] = list
  end
  list[#list + 1] = r
end

local unpack = table.unpack or unpack

local function try(list, method, path)
  local allowed
  for i = 1, #list do
    local r = list[i]
    local caps = { path:match(r.pattern) }
    if caps[1] ~= nil then
      if r.method == method or (r.method == "GET" and method == "HEAD") then
        if not r.captures then caps = {} end
        return r, caps
      end
      allowed = allowed or {}
      allowed[#allowed + 1] = r.method
    end
  end
  return nil, allowed
end

--- Find the route -> fn, captures | nil, allowed_methods (a list when the path exists).
function M:find(method, path)
  local seg = path:match("^/([^/]*)")
  local list = seg and self.buckets[seg]
  local allowed
  if list then
    local r, caps = try(list, method, path)
    if r then return r.fn, caps end
    allowed = caps
  end
  local r, caps = try(self.any, method, path)
  if r then return r.fn, caps end
  return nil, allowed or caps
end

M.unpack = unpack

return M
