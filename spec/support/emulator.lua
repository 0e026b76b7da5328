-- Starts bin/vidu-emulator as a child process for a spec, and talks to its control API with
-- vidu.core's engine.
--
--   local emulator = require("support.emulator")
--   local emu = emulator.start{ seed = 1, args = { "--polls", "2" }, config = { ... } }
--   emu.url                                   -- base URL
--   emu:control(method, path, tbl) -> decoded JSON, status
--   emu:reset(cfg), emu:config(cfg), emu:next(tbl), emu:fault(tbl), emu:task(id, tbl)
--   emu:requests{ method=, path=, match= }    -- logged requests
--   emu:webhooks()                            -- webhook deliveries and their attempts
--   emu:request{ method=, path= | url=, headers=, body= } -> engine result (any route)
--   emu:call(method, path | url, { auth=, json=, headers=, body= }) -> engine result with .json
--   emu:client(name, key, opts)               -- vidu.client for this emulator, quick polls and
--                                             -- retries (opts override them)
--   emu:wait_for(fn, timeout)                 -- polls fn until it returns a value or time runs out
--   emu:stop()                                -- also on garbage collection; call it in teardown
--   emulator.suite{ seed = N, ready = function(emu, dir) ... end }
--                                             -- a spec file's fixture: one emulator and a scratch
--                                             -- directory for the file, reset before each test
--
-- The child runs with $VIDU_LUA (the interpreter the Makefile names), else lua5.4, and exits by
-- itself when this process goes away.
-- luacheck: ignore 212/self
local core = require("vidu.core")
local cjson = require("cjson")
local ejson = require("vidu.emulator.json")
local util = require("support.util")
local launch = require("vidu.launch")

local M = {}

-- The one luv module of the run (see support.util).
M.luv = util.luv
M.luv()

local Emu = {}
Emu.__index = Emu

local function sleep(s)
  M.luv().sleep(math.floor(s * 1000))
end

--- Start an emulator. opts: seed, args (extra command-line arguments), config (a table written
-- to a JSON file for --config). Raises when it does not come up.
function M.start(opts)
  local ok, child = pcall(launch.start, opts)
  if not ok then error(child, 2) end
  return setmetatable({ url = child.url, pid = child.pid, child = child,
    engine = core.engine{ max_host_connections = 8 } }, Emu)
end

--- Any request to the emulator, blocking -> the engine's finished item.
-- t: method, path (joined to the base URL) or url, headers, body, timeout (s, default 30).
function Emu:request(t)
  if not self.engine then error("emulator stopped", 2) end
  local id = self.engine:request{
    method = t.method or "GET", url = t.url or (self.url .. (t.path or "/")), headers = t.headers or {},
    body = t.body, connect_timeout = 5, timeout = t.timeout or 30, follow = false,
    output = t.output,
  }
  local deadline = core.now() + (t.timeout or 30) + 5
  while core.now() < deadline do
    local done = self.engine:wait(50)
    for _, item in ipairs(done) do
      if item.id == id then return item end
    end
  end
  self.engine:cancel(id)
  error("emulator request timed out: " .. tostring(t.method) .. " " .. tostring(t.path or t.url))
end

--- A vidu client of provider `name` on this emulator with `key`: short poll and retry gaps,
-- so specs are quick (the schedule itself is the runtime's business); `opts` add or override.
function Emu:client(name, key, opts)
  local o = {
    api_key = key, base_url = self.url,
    poll = { first = 0.02, max = 0.1, factor = 1.5 },
    retry = { base = 0.02, cap = 0.2 },
  }
  for k, v in pairs(opts or {}) do o[k] = v end
  return require("vidu").client(name, o)
end

--- A provider call: `where` is a path or an absolute URL; opts: auth (the Authorization
-- value), json (a table or a JSON text, sent as application/json), headers, body, timeout.
-- The finished item gets .json when its body is JSON.
function Emu:call(method, where, opts)
  opts = opts or {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if opts.auth then headers["Authorization"] = opts.auth end
  local body = opts.body
  if opts.json ~= nil then
    body = type(opts.json) == "string" and opts.json or ejson.encode(opts.json)
    headers["Content-Type"] = "application/json"
  end
  local absolute = where:match("^https?://") ~= nil
  local item = self:request{ method = method, path = not absolute and where or nil,
    url = absolute and where or nil, headers = headers, body = body, timeout = opts.timeout }
  if item.ok and item.body and item.body ~= "" then
    local ok, v = pcall(cjson.decode, item.body)
    if ok then item.json = v end
  end
  return item
end

--- A control call: JSON in, decoded JSON out (raises on transport errors and bad JSON).
function Emu:control(method, path, tbl)
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  if path:sub(1, 11) ~= "/_emulator/" then path = "/_emulator" .. path end
  local item = self:request{ method = method, path = path,
    headers = { ["Content-Type"] = "application/json" }, body = tbl and ejson.encode(tbl) or nil }
  if not item.ok then error("emulator control " .. path .. ": " .. tostring(item.message)) end
  local ok, v = pcall(cjson.decode, item.body)
  if not ok then error("emulator control " .. path .. ": bad JSON: " .. tostring(item.body)) end
  return v, item.status
end

function Emu:reset(cfg) return self:control("POST", "/_emulator/reset", cfg or {}) end
function Emu:config(cfg) return self:control("POST", "/_emulator/config", cfg or {}) end
function Emu:next(tbl) return self:control("POST", "/_emulator/next", tbl or {}) end
function Emu:fault(tbl) return self:control("POST", "/_emulator/faults", tbl) end

--- Per-task control (POST with tbl, GET without).
function Emu:task(id, tbl)
  return self:control(tbl and "POST" or "GET", "/_emulator/tasks/" .. id, tbl)
end

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

--- Logged requests matching { method=, path=, match= }.
function Emu:requests(f)
  local q = {}
  for _, k in ipairs({ "method", "path", "match" }) do
    if f and f[k] then q[#q + 1] = k .. "=" .. escape(f[k]) end
  end
  local v = self:control("GET", "/_emulator/log" .. (#q > 0 and ("?" .. table.concat(q, "&")) or ""))
  return v.requests
end

--- Webhook deliveries so far.
function Emu:webhooks()
  return self:control("GET", "/_emulator/webhooks").deliveries
end

--- Poll fn() until it returns a truthy value or `timeout` seconds pass (returns nil then).
function Emu:wait_for(fn, timeout)
  local deadline = core.now() + (timeout or 10)
  repeat
    local v = fn()
    if v then return v end
    sleep(0.02)
  until core.now() > deadline
  return nil
end

--- Stop the emulator and reap it (TERM, then KILL if it does not go within 3 s).
function Emu:stop()
  self.child:stop()
  if self.engine then
    self.engine:close()
    self.engine = nil
  end
end

--- A spec file's fixture: registers busted's setup (an emulator started with `seed` and an
-- empty scratch directory, handed to ready(emu, dir)), teardown (both removed) and
-- before_each (the emulator reset to `reset`, default two polls to a success).
function M.suite(opts)
  local busted = require("busted")
  local emu, dir
  busted.setup(function()
    emu = M.start{ seed = opts.seed }
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    opts.ready(emu, dir)
  end)
  busted.teardown(function()
    if emu then emu:stop() end
    if dir then os.execute("rm -rf " .. dir) end
  end)
  busted.before_each(function()
    emu:reset(opts.reset or { progress = "polls", polls = 2, outcome = "success" })
  end)
end

return M
