--- Faults as data: rules matched against incoming requests, each firing a number of times or
-- with a probability drawn from its own seeded generator.
--
-- Rule fields: method, path (exact), match (Lua pattern on the path), times (default 1; -1 or,
-- with a probability, nil = unlimited), kind, status, body, headers, retry_after, latency_ms,
-- probability, seed.
-- Kinds: "status" (answer status/body without processing), "reset_before" (RST, request not
-- processed), "reset_after" (processed, then RST instead of the answer), "hang" (never answer,
-- not processed), "latency" (processed after latency_ms), "truncate" (processed; the answer is
-- cut in half under its full Content-Length, then the connection closes), "malformed_json"
-- (processed; the JSON answer is replaced by broken JSON), "html_502" (an nginx 502 page, not
-- processed).
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local rng = require("vidu.emulator.rng")

local M = {}
M.__index = M

M.KINDS = { status = true, reset_before = true, reset_after = true, hang = true, latency = true,
  truncate = true, malformed_json = true, html_502 = true }

--- A new, empty fault queue; `seed` drives the probability draws (default 1).
function M.new(seed)
  return setmetatable({ rules = {}, n = 0, seed = seed or 1 }, M)
end

--- Drops every queued fault.
function M:clear()
  self.rules = {}
end

--- Add a rule (validated) -> rule | nil, err.
function M:add(r)
  if type(r) ~= "table" then return nil, "fault must be an object" end
  local kind = r.kind or "status"
  if not M.KINDS[kind] then return nil, "unknown fault kind: " .. tostring(kind) end
  if r.match ~= nil then
    if type(r.match) ~= "string" then return nil, "match must be a Lua pattern string" end
    local ok = pcall(string.find, "", r.match)
    if not ok then return nil, "invalid Lua pattern in match" end
  end
  if r.probability ~= nil and (type(r.probability) ~= "number" or r.probability < 0 or r.probability > 1) then
    return nil, "probability must be a number in [0, 1]"
  end
  if r.status ~= nil and (type(r.status) ~= "number" or r.status < 100 or r.status > 599) then
    return nil, "status must be an HTTP status code"
  end
  local times = r.times
  if times == nil then times = r.probability and -1 or 1 end
  if type(times) ~= "number" then return nil, "times must be a number" end
  self.n = self.n + 1
  local rule = {
    id = self.n, method = r.method and string.upper(r.method), path = r.path, match = r.match,
    times = times, kind = kind, status = r.status or (kind == "html_502" and 502 or 503), body = r.body,
    headers = r.headers, retry_after = r.retry_after and tostring(r.retry_after),
    latency_ms = tonumber(r.latency_ms) or 1000, probability = r.probability, fired = 0,
    rng = rng.new(r.seed or (self.seed * 7919 + self.n)),
  }
  self.rules[#self.rules + 1] = rule
  return rule
end

--- The first rule that fires for this request (consumes one of its times), or nil.
function M:take(method, path)
  local rules = self.rules
  for i = 1, #rules do
    local r = rules[i]
    if r.times ~= 0 and (not r.method or r.method == method)
      and (not r.path or r.path == path) and (not r.match or path:find(r.match)) then
      local fire = true
      if r.probability then fire = r.rng:float() < r.probability end
      if fire then
        if r.times > 0 then r.times = r.times - 1 end
        r.fired = r.fired + 1
        return r
      end
    end
  end
  return nil
end

--- Public view of the rules.
function M:list()
  local out = {}
  for i, r in ipairs(self.rules) do
    out[i] = { id = r.id, method = r.method, path = r.path, match = r.match, kind = r.kind,
      times = r.times, fired = r.fired, status = r.status, probability = r.probability }
  end
  return out
end

M.HTML_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
  .. "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

return M
