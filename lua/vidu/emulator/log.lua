--- The request log: what clients sent (method, path, query, headers, body, time) and what they
-- got (status, fault), in a bounded ring so a long benchmark does not grow without end.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local M = {}
M.__index = M

--- New log keeping at most `limit` entries, and of each body at most `body_limit` bytes (the rest
-- is dropped and the entry says so with body_truncated and body_size).
function M.new(limit, body_limit)
  return setmetatable({ limit = limit or 20000, body_limit = body_limit or 4 * 1024 * 1024, items = {},
    first = 1, last = 0 }, M)
end

--- Forgets every logged request.
function M:clear()
  self.items, self.first, self.last = {}, 1, 0
end

--- Record a request -> the entry (the caller fills in status and fault later).
function M:add(req, time)
  local body = req.body
  local e = { method = req.method, path = req.path, query = req.query, headers = req.headers,
    body = body, time = time }
  if body and #body > self.body_limit then
    e.body, e.body_truncated, e.body_size = body:sub(1, self.body_limit), true, #body
  end
  self.last = self.last + 1
  self.items[self.last] = e
  if self.last - self.first + 1 > self.limit then
    self.items[self.first] = nil
    self.first = self.first + 1
  end
  return e
end

--- Entries matching filters { method=, path= (exact), match= (Lua pattern on the path) }.
function M:find(f)
  f = f or {}
  local out = {}
  local method = f.method and f.method:upper()
  for i = self.first, self.last do
    local e = self.items[i]
    if e and (not method or e.method == method) and (not f.path or e.path == f.path)
      and (not f.match or e.path:find(f.match)) then
      out[#out + 1] = e
    end
  end
  return out
end

return M
