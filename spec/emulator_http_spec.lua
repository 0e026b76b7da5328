-- vidu.emulator.http, the generic luv HTTP/1.1 server, driven in this process by raw TCP
-- clients (exact bytes on the wire) and by vidu.core's engine, pumping both loops until each
-- exchange completes or a deadline passes.
local uv = require("support.emulator").luv()
local core = require("vidu.core")
local http = require("vidu.emulator.http")

local srv
local seen = {}

local function pump_until(fn, seconds)
  local deadline = core.now() + (seconds or 60)
  while core.now() < deadline do
    uv.run("nowait")
    local v = fn()
    if v then return v end
    uv.sleep(1)
  end
  return nil
end

-- Send raw bytes on a new connection; collect what comes back until `done(buf)` is true or
-- the server closes. Returns the bytes, and whether the server closed/reset the connection.
local function exchange(data, done, seconds)
  local tcp = uv.new_tcp()
  local chunks, closed, err = {}, false, nil
  tcp:connect("127.0.0.1", srv.port, function(cerr)
    if cerr then err = cerr; closed = true; return end
    if type(data) == "table" then
      for _, d in ipairs(data) do tcp:write(d) end
    else
      tcp:write(data)
    end
    tcp:read_start(function(rerr, d)
      if rerr then err = rerr; closed = true; return end
      if d then chunks[#chunks + 1] = d else closed = true end
    end)
  end)
  pump_until(function()
    return closed or (done and done(table.concat(chunks)))
  end, seconds)
  if not tcp:is_closing() then tcp:close() end
  uv.run("nowait")
  return table.concat(chunks), closed, err
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

-- Drive the engine and the server loop together for one request.
local engine
local function request(t)
  local id = engine:request{ method = t.method or "GET", url = srv.url .. t.path, headers = t.headers or {},
    body = t.body, timeout = t.timeout or 10 }
  local result
  pump_until(function()
    for _, item in ipairs(engine:step()) do
      if item.id == id then result = item end
    end
    return result
  end)
  return result
end

setup(function()
  engine = core.engine{}
  srv = assert(http.server{ port = 0, max_body = 1024 * 1024, on_error = function() end,
    handler = function(req, res)
    seen[#seen + 1] = req
    local p = req.path
    if p == "/echo" then
      res:send(200, { ["Content-Type"] = "text/plain", ["X-Method"] = req.method,
        ["X-Query-A"] = req.params.a or "" }, req.body)
    elseif p == "/later" then
      res:after(30, function() res:send(200, nil, "later:" .. req.body) end)
    elseif p == "/stream" then
      res:stream(200, { ["Content-Type"] = "text/plain" })
      res:write("one,")
      res:after(10, function() res:write("two"); res:finish() end)
    elseif p == "/sized" then
      res:stream(200, { ["Content-Length"] = "6" })
      res:write("abc")
      res:write("def")
      res:finish()
    elseif p == "/reset" then
      res:reset()
    elseif p == "/hang" then
      res:hang()
    elseif p == "/cut" then
      res:stream(200, { ["Content-Length"] = "100" })
      res:write("only ten..")
      res:close_now()
    elseif p == "/bytes" then
      http.send_bytes(req, res, { ["Content-Type"] = "application/octet-stream" }, "0123456789")
    elseif p == "/close" then
      res:send(200, { Connection = "close" }, "bye")
    elseif p == "/drip" then
      -- 256 KiB every 5 ms, 64 times: still writing long after a client hung up.
      local chunk, left = string.rep("x", 256 * 1024), 64
      res:stream(200, { ["Content-Length"] = tostring(#chunk * left) })
      local function more()
        if left == 0 then return res:finish() end
        left = left - 1
        res:write(chunk)
        res:after(5, more)
      end
      more()
    elseif p == "/error" then
      error("boom")
    else
      res:send(404, nil, "nope")
    end
  end })
end)

teardown(function()
  srv:close()
  engine:close()
  uv.run("nowait")
end)

before_each(function() seen = {} end)

describe("emulator http server", function()
  it("answers with Content-Length and keeps the connection alive", function()
    local out, closed = exchange("GET /echo?a=x%20y HTTP/1.1\r\nHost: t\r\n\r\n", function(b)
      return b:find("\r\n\r\n", 1, true) ~= nil
    end)
    assert.matches("^HTTP/1%.1 200 OK\r\n", out)
    assert.matches("\r\nContent%-Length: 0\r\n", out)
    assert.matches("\r\nX%-Query%-A: x y\r\n", out)
    assert.is_false(closed)
  end)

  it("drops a connection whose client hung up mid-response, and keeps serving", function()
    -- The engine's size cap aborts the transfer; the server's later writes hit a closed
    -- socket (ECONNRESET, or EPIPE/SIGPIPE depending on timing: http.lua ignores SIGPIPE).
    local r = request{ path = "/drip", timeout = 10 }
    local before = srv:connections()
    local id = engine:request{ method = "GET", url = srv.url .. "/drip", max_response = 1000,
      fresh_connect = true }
    local aborted
    pump_until(function()
      for _, item in ipairs(engine:step()) do
        if item.id == id then aborted = item end
      end
      return aborted
    end)
    assert.are.equal("too_large", aborted.error)
    assert.are.equal(256 * 1024 * 64, r.bytes)
    -- the server writes into the dead connection until it notices and drops it
    assert.truthy(pump_until(function() return srv:connections() <= before end, 10))
    local after = request{ path = "/echo", method = "POST", body = "still here" }
    assert.is_true(after.ok)
    assert.are.equal("still here", after.body)
  end)

  it("parses query strings and headers", function()
    exchange("POST /echo?a=1&b=two+words&c=%41 HTTP/1.1\r\nHost: t\r\n"
      .. "X-Custom:  spaced  \r\nx-custom: again\r\n"
      .. "Content-Length: 3\r\n\r\nabc", function(b) return b:find("abc", 1, true) end)
    local req = seen[1]
    assert.are.equal("POST", req.method)
    assert.are.equal("/echo", req.path)
    assert.are.equal("a=1&b=two+words&c=%41", req.query)
    assert.are.equal("/echo?a=1&b=two+words&c=%41", req.target)
    assert.are.same({ a = "1", b = "two words", c = "A" }, req.params)
    assert.are.equal("spaced, again", req.headers["x-custom"])
    assert.are.equal("abc", req.body)
  end)

  it("answers pipelined requests in order, even when the first is delayed", function()
    local data = "POST /later HTTP/1.1\r\nContent-Length: 1\r\n\r\nAGET /echo?a=2 HTTP/1.1\r\n\r\n"
      .. "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n"
    local out = exchange(data, function(b) return b:find("xyz", 1, true) end)
    local a = out:find("later:A", 1, true)
    local b = out:find("X-Query-A: 2", 1, true)
    local c = out:find("xyz", 1, true)
    assert.is_truthy(a and b and c)
    assert.is_true(a < b and b < c)
  end)

  it("takes requests split into single bytes", function()
    local req = "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    local pieces = {}
    for i = 1, #req do pieces[i] = req:sub(i, i) end
    local out = exchange(pieces, function(b) return b:find("hello", 1, true) end)
    assert.matches("hello$", out)
  end)

  it("dechunks request bodies, with extensions and trailers", function()
    local out = exchange("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", function(b)
      return b:find("hello world", 1, true)
    end)
    assert.matches("\r\n\r\nhello world$", out)
  end)

  it("answers 100 Continue when asked", function()
    local out = exchange({ "POST /echo HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n", "ok" },
      function(b) return b:find("\r\n\r\nok", 1, true) end)
    assert.matches("^HTTP/1%.1 100 Continue\r\n\r\nHTTP/1%.1 200", out)
  end)

  it("streams chunked responses, or with the Content-Length given", function()
    local out = exchange("GET /stream HTTP/1.1\r\n\r\n", function(b) return b:find("0\r\n\r\n", 1, true) end)
    assert.matches("Transfer%-Encoding: chunked", out)
    assert.matches("\r\n\r\n4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n$", out)
    out = exchange("GET /sized HTTP/1.1\r\n\r\n", function(b) return b:find("abcdef", 1, true) end)
    assert.matches("Content%-Length: 6", out)
    assert.is_nil(out:find("chunked", 1, true))
  end)

  it("sends no body for HEAD", function()
    local out = exchange("HEAD /echo HTTP/1.1\r\n\r\nGET /bytes HTTP/1.1\r\n\r\n", function(b)
      return b:find("0123456789", 1, true)
    end)
    assert.are.equal(2, count(out, "HTTP/1%.1 200"))
  end)

  it("closes after Connection: close, HTTP/1.0, or a handler's Connection: close", function()
    local out, closed = exchange("GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert.is_true(closed)
    assert.matches("Connection: close", out)
    out, closed = exchange("GET /echo HTTP/1.0\r\n\r\n")
    assert.is_true(closed)
    assert.matches("^HTTP/1%.1 200", out)
    out, closed = exchange("GET /close HTTP/1.1\r\n\r\n")
    assert.is_true(closed)
    assert.matches("bye$", out)
  end)

  it("rejects malformed requests and oversized heads and bodies", function()
    local out, closed = exchange("NOT HTTP\r\n\r\n")
    assert.matches("^HTTP/1%.1 400", out)
    assert.is_true(closed)
    out = exchange("POST /echo HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    assert.matches("^HTTP/1%.1 400", out)
    out = exchange("GET / HTTP/1.1\r\nX-Big: " .. string.rep("a", http.MAX_HEAD + 10) .. "\r\n\r\n")
    assert.matches("^HTTP/1%.1 431", out)
    out = exchange("POST /echo HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n")
    assert.matches("^HTTP/1%.1 413", out)
  end)

  it("answers 500 when a handler raises", function()
    local out = exchange("GET /error HTTP/1.1\r\n\r\n", function(b) return b:find("\r\n\r\n", 1, true) end)
    assert.matches("^HTTP/1%.1 500", out)
  end)

  it("resets, hangs and cuts short on request (seen by the engine)", function()
    local r = request{ path = "/reset" }
    assert.is_false(r.ok)
    assert.are.equal("reset", r.error)
    r = request{ path = "/hang", timeout = 0.3 }
    assert.is_false(r.ok)
    assert.are.equal("timeout", r.error)
    r = request{ path = "/cut" }
    assert.is_false(r.ok)
    assert.are.equal("reset", r.error)
  end)

  it("serves byte ranges", function()
    local cases = {
      { "bytes=0-3", 206, "0123", "bytes 0-3/10" },
      { "bytes=7-", 206, "789", "bytes 7-9/10" },
      { "bytes=-2", 206, "89", "bytes 8-9/10" },
      { "bytes=5-100", 206, "56789", "bytes 5-9/10" },
      { "bytes=10-", 416, nil, "bytes */10" },
      { "bytes=0-1,4-5", 200, "0123456789", nil },
      { "lines=1-2", 200, "0123456789", nil },
    }
    for _, c in ipairs(cases) do
      local r = request{ path = "/bytes", headers = { Range = c[1] } }
      assert.are.equal(c[2], r.status, c[1])
      if c[3] then assert.are.equal(c[3], r.body, c[1]) end
      assert.are.equal(c[4], r.headers["content-range"], c[1])
    end
  end)

  it("serves many requests over kept-alive engine connections", function()
    local ids, left = {}, 0
    for i = 1, 200 do
      ids[engine:request{ url = srv.url .. "/echo?a=" .. i }] = tostring(i)
      left = left + 1
    end
    local ok = 0
    pump_until(function()
      for _, item in ipairs(engine:step()) do
        if item.ok and item.headers["x-query-a"] == ids[item.id] then ok = ok + 1 end
        left = left - 1
      end
      return left == 0
    end)
    assert.are.equal(200, ok)
    assert.is_true(srv.accepted < 200)
  end)

  it("holds a thousand connections open at once", function()
    local clients, connected = {}, 0
    local accepted = srv.accepted
    for i = 1, 1000 do
      local c = uv.new_tcp()
      clients[i] = c
      c:connect("127.0.0.1", srv.port, function(err) if not err then connected = connected + 1 end end)
    end
    pump_until(function() return connected == 1000 and srv.accepted - accepted >= 1000 end)
    assert.are.equal(1000, connected)
    assert.are.equal(1000, srv.accepted - accepted)
    assert.is_true(srv:connections() >= 1000)
    for _, c in ipairs(clients) do c:close() end
    pump_until(function() return srv:connections() < 1000 end)
    assert.is_true(srv:connections() < 1000)
  end)

  it("escapes and unescapes", function()
    assert.are.equal("a%20b%2Fc~", http.escape("a b/c~"))
    assert.are.equal("a b/c", http.unescape("a+b%2Fc"))
    assert.are.same({ x = "1", y = "" }, http.parse_query("x=1&y&x=2"))
  end)
end)
