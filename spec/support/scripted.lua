-- A scripted HTTP server for the runtime's specs (http, task, client): each path answers from
-- a script of actions, and every request is logged with the server's monotonic time.
--
--   local scripted = require("support.scripted")
--   local srv = scripted.start()            -- or start{ port = N }
--   srv:script("name", { action, ... })     -- /s/name answers with these in turn; the last
--                                           -- one repeats
--   srv:log("name" [, method]) -> { { method, path, query, headers, body, time }, ... }
--   srv:peak("name") -> most requests to /s/name in flight at once
--   srv:reset(); srv:stop()
--
-- Actions: { status = 200, headers = {...}, body = "..." | json = tbl | bytes = n,
--            delay_ms = n }, { reset = true } (RST after reading the request),
--            { hang = true }, { truncate = n_total, sent = n } (promise n_total bytes,
--            send `sent`, then reset).
-- The child process is `$VIDU_LUA spec/support/scripted.lua --serve [port]`; it exits when
-- its parent goes away, so a crashed run leaves nothing behind.
local M = {}

local function serve(port)
  local uv = require("luv")
  local http = require("vidu.emulator.http")
  local cjson = require("cjson")

  local scripts, logs, inflight, peaks = {}, {}, {}, {}
  local function now() return uv.hrtime() / 1e9 end

  local function send_json(res, status, t)
    res:send(status, { ["Content-Type"] = "application/json" }, cjson.encode(t))
  end

  local function run_action(name, a, req, res)
    local function done() inflight[name] = inflight[name] - 1 end
    if a.hang then return res:hang() end
    if a.reset then done() return res:reset() end
    if a.truncate then
      res:stream(200, { ["Content-Length"] = tostring(a.truncate) })
      res:write(string.rep("x", a.sent or 0))
      return res:after(20, function() done() res:reset() end)
    end
    local body, headers = a.body, {}
    for k, v in pairs(a.headers or {}) do headers[k] = v end
    if a.json then
      body = cjson.encode(a.json)
      headers["Content-Type"] = headers["Content-Type"] or "application/json"
    elseif a.bytes then
      body = string.rep("v", a.bytes)
      headers["Content-Type"] = "video/mp4"
    end
    done()
    res:send(a.status or 200, headers, body or "")
    return req
  end

  local routes = {}
  routes["/_ctl/reset"] = function(_, res)
    scripts, logs, inflight, peaks = {}, {}, {}, {}
    send_json(res, 200, { ok = true })
  end
  routes["/_ctl/script"] = function(req, res)
    local t = cjson.decode(req.body)
    scripts[t.name] = { actions = t.actions, i = 0 }
    send_json(res, 200, { ok = true })
  end
  routes["/_ctl/log"] = function(req, res)
    local name = req.params.name
    local list = logs[name] or {}
    send_json(res, 200, { requests = #list > 0 and list or cjson.empty_array or {},
      peak = peaks[name] or 0 })
  end

  local srv = http.server{ host = "127.0.0.1", port = port or 0, handler = function(req, res)
    local route = routes[req.path]
    if route then return route(req, res) end
    local name = req.path:match("^/s/([%w_%-]+)")
    local sc = name and scripts[name]
    if not sc then return send_json(res, 404, { message = "no script for " .. req.path }) end
    local list = logs[name] or {}
    logs[name] = list
    list[#list + 1] = { method = req.method, path = req.path, query = req.query,
      headers = req.headers, body = req.body, time = now() }
    inflight[name] = (inflight[name] or 0) + 1
    if inflight[name] > (peaks[name] or 0) then peaks[name] = inflight[name] end
    sc.i = sc.i + 1
    local a = sc.actions[math.min(sc.i, #sc.actions)]
    if a.delay_ms then
      return res:after(a.delay_ms, function() run_action(name, a, req, res) end)
    end
    return run_action(name, a, req, res)
  end }

  print("http://127.0.0.1:" .. srv.port)
  print(string.format("%d", uv.os_getpid()))
  io.stdout:flush()
  local parent = uv.os_getppid()
  local watch = uv.new_timer()
  watch:start(200, 200, function()
    if uv.os_getppid() ~= parent then os.exit(0) end
  end)
  uv.run()
end

if select(1, ...) == "--serve" then
  return serve(tonumber((select(2, ...))))
end

local util = require("support.util")

local Server = {}
Server.__index = Server

-- A private engine, so control calls never touch the scheduler under test.
local engine

local function call(method, url, body)
  engine = engine or require("vidu.core").engine{}
  local item = util.fetch(engine, { method = method, url = url, body = body,
    headers = body and { ["Content-Type"] = "application/json" } or nil, timeout = 10 }, 30)
  assert(item.ok and item.status == 200, "scripted server: " .. method .. " " .. url ..
    " failed: " .. tostring(item.message or item.status))
  return require("cjson").decode(item.body)
end

--- Starts the server in a child process. opts.port: a fixed port (default any free one).
function M.start(opts)
  local lua = os.getenv("VIDU_LUA") or "lua5.4"
  local port = opts and opts.port and (" " .. opts.port) or ""
  local child = util.start_server(lua .. " spec/support/scripted.lua --serve" .. port,
    "scripted server")
  return setmetatable({ url = child.url, pid = child.pid, child = child }, Server)
end

function Server:reset() call("POST", self.url .. "/_ctl/reset", "{}") end

function Server:script(name, actions)
  local cjson = require("cjson")
  call("POST", self.url .. "/_ctl/script", cjson.encode{ name = name, actions = actions })
end

function Server:log(name, method)
  local t = call("GET", self.url .. "/_ctl/log?name=" .. name)
  local out = {}
  for _, r in ipairs(type(t.requests) == "table" and t.requests or {}) do
    if not method or r.method == method then out[#out + 1] = r end
  end
  return out
end

function Server:peak(name)
  return call("GET", self.url .. "/_ctl/log?name=" .. name).peak
end

function Server:stop() self.child:stop() end

--- A TCP port that nothing listens on (bound and released at once).
function M.free_port()
  local uv = require("luv")
  local tcp = uv.new_tcp()
  assert(tcp:bind("127.0.0.1", 0))
  local port = tcp:getsockname().port
  tcp:close()
  uv.run("nowait")
  return port
end

return M
