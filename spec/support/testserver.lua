-- Test-only HTTP server for spec/engine_spec.lua, on the emulator's generic luv server.
--
--   $VIDU_LUA spec/support/testserver.lua
--
-- Prints its base URL ("http://127.0.0.1:PORT") as the first stdout line and its pid as the
-- second, then serves until killed. It also exits by itself when its parent goes away, so a
-- crashed test run never leaves it behind.
--
-- Routes (all answer any method unless noted):
--   /status/N              status N, body "status N"
--   /headers               the request's headers as JSON (lower-case names)
--   /dup-headers           a response repeating X-Dup and Set-Cookie
--   /many-headers?n=N      N headers X-Header-i, each with a 64-byte value
--   /big?bytes=N           N bytes with Content-Length, written in 64 KiB pieces
--   /bytes?n=N             same as /big (downloads)
--   /chunked?n=K&size=S    K chunks of S bytes, Transfer-Encoding: chunked
--   /slow?ms=N             "slow" after N ms
--   /hang                  never answers
--   /close-mid-body        headers promising 100000 bytes, 1000 of them, then a reset
--   /partial?n=N           headers promising N bytes, the first N/2 of them, then silence
--   /empty-reply           closes the connection before any response byte
--   /redirect?to=URL[&status=S]  S (default 302) to URL; 307/308 keep the method and body
--   /redirect-loop         302 to itself, forever
--   /reset-once?key=K      the first request for K: read, then the connection reset; later
--                          ones: 200. /count?key=K: how many requests /reset-once saw for K
--   /echo                  the request body back; X-Body-Length, X-Method, X-Content-Type
--   /trickle?n=N&every=MS  headers promising N bytes, then one byte every MS ms (a stall that
--                          is not silence); stops with the connection
--   /error-big?bytes=N     status 500 with a body of N bytes
--   /claim?len=N           headers claiming Content-Length N (any size, 2^31 and beyond),
--                          then 10 bytes and a clean close
--   /sse?chunks=JSON&every=MS  a text/event-stream answer: each string of the JSON array
--                          written on its own, MS ms apart (default 30), then the end
local uv = require("luv")
local http = require("vidu.emulator.http")
local cjson = require("cjson")

local rep, sub = string.rep, string.sub

-- A body of n bytes whose content depends on the position (so truncation or reordering
-- would show), built from one 64 KiB block.
local BLOCK = {}
for i = 0, 255 do BLOCK[#BLOCK + 1] = string.char(i) end
BLOCK = rep(table.concat(BLOCK), 256)
local function body_of(n)
  local full = math.floor(n / #BLOCK)
  return rep(BLOCK, full) .. sub(BLOCK, 1, n - full * #BLOCK)
end

local function number_param(req, name, default)
  local v = tonumber(req.params[name])
  if v == nil then return default end
  return v
end

local routes = {}

routes["/headers"] = function(req, res)
  res:send(200, { ["Content-Type"] = "application/json" }, cjson.encode(req.headers))
end

routes["/dup-headers"] = function(_, res)
  res:send(200, { ["X-Dup"] = { "one", "two" }, ["Set-Cookie"] = { "a=1", "b=2" },
    ["X-Spaced"] = "  padded  " }, "dup")
end

routes["/many-headers"] = function(req, res)
  local headers, value = {}, rep("v", 64)
  for i = 1, number_param(req, "n", 10) do headers["X-Header-" .. i] = value end
  res:send(200, headers, "many")
end

local function big(req, res)
  local n = number_param(req, "bytes", number_param(req, "n", 0))
  res:stream(200, { ["Content-Length"] = tostring(n), ["Content-Type"] = "application/octet-stream" })
  local piece = #BLOCK
  local sent = 0
  while sent < n do
    local k = math.min(piece, n - sent)
    res:write(k == piece and BLOCK or sub(BLOCK, 1, k))
    sent = sent + k
  end
  res:finish()
end
routes["/big"] = big
routes["/bytes"] = big

routes["/chunked"] = function(req, res)
  local n, size = number_param(req, "n", 10), number_param(req, "size", 1000)
  res:stream(200, { ["Content-Type"] = "application/octet-stream" })
  local chunk = body_of(size)
  for _ = 1, n do res:write(chunk) end
  res:finish()
end

routes["/slow"] = function(req, res)
  res:after(number_param(req, "ms", 1000), function()
    res:send(200, { ["Content-Type"] = "text/plain" }, "slow")
  end)
end

routes["/hang"] = function(_, res) res:hang() end

routes["/close-mid-body"] = function(_, res)
  res:stream(200, { ["Content-Length"] = "100000" })
  res:write(body_of(1000))
  res:after(20, function() res:reset() end)
end

routes["/partial"] = function(req, res)
  local n = number_param(req, "n", 100000)
  res:stream(200, { ["Content-Length"] = tostring(n) })
  res:write(body_of(math.floor(n / 2)))
  res:hang()
end

routes["/empty-reply"] = function(_, res) res:reset() end

routes["/redirect"] = function(req, res)
  res:send(number_param(req, "status", 302), { Location = req.params.to or "/status/200" }, "moved")
end

routes["/redirect-loop"] = function(_, res)
  res:send(302, { Location = "/redirect-loop" }, "again")
end

local seen = {}
routes["/reset-once"] = function(req, res)
  local key = req.params.key or ""
  seen[key] = (seen[key] or 0) + 1
  if seen[key] == 1 then return res:reset() end
  res:send(200, { ["Content-Type"] = "text/plain" }, "second")
end

routes["/count"] = function(req, res)
  res:send(200, { ["Content-Type"] = "text/plain" }, tostring(seen[req.params.key or ""] or 0))
end

routes["/echo"] = function(req, res)
  local body = req.body or ""
  res:send(200, {
    ["X-Body-Length"] = tostring(#body),
    ["X-Method"] = req.method,
    ["X-Content-Type"] = req.headers["content-type"] or "",
    ["Content-Type"] = "application/octet-stream",
  }, body)
end

routes["/trickle"] = function(req, res)
  local n, every = number_param(req, "n", 100), number_param(req, "every", 2000)
  res:stream(200, { ["Content-Length"] = tostring(n), ["Content-Type"] = "application/octet-stream" })
  local sent = 0
  local function tick()
    if res.conn.closed or res.done then return end
    res:write("x")
    sent = sent + 1
    if sent < n then res:after(every, tick) else res:finish() end
  end
  tick()
end

routes["/sse"] = function(req, res)
  local chunks, every = cjson.decode(req.params.chunks or "[]"), number_param(req, "every", 30)
  res:stream(200, { ["Content-Type"] = "text/event-stream" })
  local i = 0
  local function tick()
    if res.conn.closed or res.done then return end
    i = i + 1
    if i > #chunks then return res:finish() end
    res:write(chunks[i])
    res:after(every, tick)
  end
  tick()
end

routes["/error-big"] = function(req, res)
  res:send(500, { ["Content-Type"] = "application/octet-stream" }, body_of(number_param(req, "bytes", 0)))
end

routes["/claim"] = function(req, res)
  res:stream(200, { ["Content-Length"] = req.params.len or "0",
    ["Content-Type"] = "application/octet-stream" })
  res:write(body_of(10))
  res:close_now()
end

local function handler(req, res)
  local route = routes[req.path]
  if route then return route(req, res) end
  local code = req.path:match("^/status/(%d%d%d)$")
  if code then
    return res:send(tonumber(code), { ["Content-Type"] = "text/plain", ["X-Status"] = code },
      "status " .. code)
  end
  res:send(404, { ["Content-Type"] = "text/plain" }, "no route " .. req.path)
end

local srv = http.server{ host = "127.0.0.1", port = 0, handler = handler }
io.stdout:write(string.format("http://127.0.0.1:%d\n%d\n", srv.port, uv.os_getpid()))
io.stdout:flush()

-- Exit with the parent: a killed test run must not leave the server listening.
local parent = uv.os_getppid()
local watchdog = uv.new_timer()
watchdog:start(500, 500, function()
  if uv.os_getppid() ~= parent then
    watchdog:close()
    srv:close()
    os.exit(0)
  end
end)

uv.run()
