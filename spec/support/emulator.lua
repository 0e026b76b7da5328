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
--   emu:wait_for(fn, timeout)                 -- polls fn until it returns a value or time runs out
--   emu:stop()                                -- also on garbage collection; call it in teardown
--
-- The child runs with $VIDU_LUA (the interpreter the Makefile names), else lua5.4, and exits by
-- itself when this process goes away.
-- luacheck: ignore 212/self
local core = require("vidu.core")
local cjson = require("cjson")
local ejson = require("vidu.emulator.json")

local M = {}

-- busted unloads the modules a spec file loaded before the next file runs. luv keeps its event
-- loop in its module table (field _loop), so an unloaded luv frees the loop while the next
-- file's luv still uses it (a crash in uv_tcp_init). Keep the first luv module alive for the
-- whole process: every spec that uses luv in-process gets it from here.
local PIN = "lua-vidu.spec.pinned-luv"
function M.luv()
  local reg = debug.getregistry()
  local uv = reg[PIN]
  if not uv then
    uv = require("luv")
    reg[PIN] = uv
  end
  return uv
end
M.luv()

local Emu = {}
Emu.__index = Emu

local function root_dir()
  local src = debug.getinfo(1, "S").source
  local dir = src:match("^@(.*)/spec/support/[^/]*$")
  return dir or "."
end

local function sleep(s)
  M.luv().sleep(math.floor(s * 1000))
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Start an emulator. opts: seed, args (extra command-line arguments), config (a table written
-- to a JSON file for --config). Raises when it does not come up.
function M.start(opts)
  opts = opts or {}
  local root = root_dir()
  local lua = os.getenv("VIDU_LUA") or "lua5.4"
  local argv = { lua, root .. "/bin/vidu-emulator", "--port", "0", "--seed", tostring(opts.seed or 1),
    "--exit-with-parent" }
  local config_path
  if opts.config then
    config_path = os.tmpname()
    local f = assert(io.open(config_path, "wb"))
    f:write(ejson.encode(opts.config))
    f:close()
    argv[#argv + 1] = "--config"
    argv[#argv + 1] = config_path
  end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = tostring(a) end
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = shell_quote(a) end
  -- The shell prints its pid, then becomes the emulator (exec keeps the pid).
  local pipe = assert(io.popen("echo $$; exec " .. table.concat(quoted, " "), "r"))
  local pid = tonumber(pipe:read("*l") or "")
  local url = pipe:read("*l")
  if config_path then os.remove(config_path) end
  if not pid or not url or not url:match("^http://") then
    pipe:close()
    error("emulator did not start (first line: " .. tostring(url) .. ")")
  end
  local self = setmetatable({ url = url, pid = pid, pipe = pipe,
    engine = core.engine{ max_host_connections = 8 } }, Emu)
  -- Finalizer for Lua 5.1/LuaJIT, where tables have no __gc.
  if newproxy then
    local proxy = newproxy(true)
    getmetatable(proxy).__gc = function() self:stop() end
    self.gc_proxy = proxy
  end
  return self
end

Emu.__gc = function(self) self:stop() end

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

-- Is the process running? (a zombie waiting for pclose counts as gone)
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if f then
    local stat = f:read("*l") or ""
    f:close()
    return stat:match("^%d+ %b() (%a)") ~= "Z"
  end
  local a, _, c = os.execute("kill -0 " .. pid .. " 2>/dev/null")
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

--- Stop the emulator and reap it (TERM, then KILL if it does not go within 3 s).
function Emu:stop()
  if not self.pipe then return end
  local pid = self.pid
  os.execute("kill -TERM " .. pid .. " 2>/dev/null")
  local deadline = core.now() + 3
  while core.now() < deadline and alive(pid) do sleep(0.02) end
  if alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
  self.pipe:close()
  self.pipe = nil
  if self.engine then
    self.engine:close()
    self.engine = nil
  end
end

return M
