--- A small HTTP/1.1 server on luv, made for tests and the offline emulator.
--
-- Keep-alive, pipelined requests answered in order, chunked request bodies, Content-Length and
-- chunked responses, HEAD, byte ranges, delayed answers from timers, abrupt resets and hangs.
-- Everything runs on the luv loop of the process; nothing here blocks.
--
--   local http = require("vidu.emulator.http")
--   local srv = http.server{ host = "127.0.0.1", port = 0, handler = function(req, res) end }
--   srv.port; srv:close()
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local uv = require("luv")

local concat, insert = table.concat, table.insert
local find, sub, lower, format = string.find, string.sub, string.lower, string.format
local tonumber, type, pairs = tonumber, type, pairs

local M = {}

M.MAX_HEAD = 64 * 1024            -- request line + headers
M.MAX_BODY = 256 * 1024 * 1024    -- request body, default cap (server option max_body)

local REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [206] = "Partial Content", [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
  [410] = "Gone", [411] = "Length Required", [413] = "Payload Too Large",
  [416] = "Range Not Satisfiable", [422] = "Unprocessable Entity", [425] = "Too Early",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large", [499] = "Client Closed Request",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
}
M.REASONS = REASONS

--- Percent-decode a query component ('+' is a space).
function M.unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- Percent-encode a string for use in a query or path component.
function M.escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end

--- Decode a raw query string into a table (the first value of a repeated key wins).
function M.parse_query(q)
  local t = {}
  if not q or q == "" then return t end
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if not k then k, v = pair, "" end
    k = M.unescape(k)
    if t[k] == nil then t[k] = M.unescape(v) end
  end
  return t
end

-- The Date header changes once a second; build it at most once a second.
local date_cache, date_time = "", -1
local function http_date()
  local now = os.time()
  if now ~= date_time then
    date_time = now
    date_cache = os.date("!%a, %d %b %Y %H:%M:%S GMT", now)
  end
  return date_cache
end
M.http_date = http_date

-- Does a header table (any case) name this header? Returns its value.
local function header_value(headers, name)
  if not headers then return nil end
  for k, v in pairs(headers) do
    if lower(k) == name then return v end
  end
  return nil
end
M.header_value = header_value

-- The status line and headers as one string. `extra` holds what the server adds.
local function build_head(status, headers, extra)
  local parts, n = { "HTTP/1.1 ", tostring(status), " ", REASONS[status] or "Status", "\r\n" }, 5
  if headers then
    for k, v in pairs(headers) do
      if type(v) == "table" then
        for i = 1, #v do
          parts[n + 1], parts[n + 2], parts[n + 3], parts[n + 4] = k, ": ", tostring(v[i]), "\r\n"
          n = n + 4
        end
      else
        parts[n + 1], parts[n + 2], parts[n + 3], parts[n + 4] = k, ": ", tostring(v), "\r\n"
        n = n + 4
      end
    end
  end
  for i = 1, #extra do
    parts[n + 1] = extra[i]
    n = n + 1
  end
  parts[n + 1] = "\r\n"
  return concat(parts, "", 1, n + 1)
end

-- Connections ====================================================================================

local Conn = {}
Conn.__index = Conn

local Response = {}
Response.__index = Response

-- Bytes not yet parsed live in c.s from c.off, followed by the chunks in c.pend.
-- Joining happens only when a parse step needs contiguous bytes, and a body of known length is
-- joined once, when all of it is there: no quadratic concatenation on large uploads.
local function push(c, data)
  c.np = c.np + 1
  c.pend[c.np] = data
  c.avail = c.avail + #data
end

local function joined(c)
  if c.np > 0 then
    local rest = c.s
    if c.off > 1 then rest = sub(rest, c.off) end
    if rest == "" and c.np == 1 then
      c.s = c.pend[1]
    else
      insert(c.pend, 1, rest)
      c.s = concat(c.pend, "", 1, c.np + 1)
    end
    c.pend, c.np, c.off = {}, 0, 1
  end
  return c.s, c.off
end

-- Take n bytes from the front of the buffer.
local function take(c, n)
  local s, off = joined(c)
  local out = sub(s, off, off + n - 1)
  c.off = off + n
  c.avail = c.avail - n
  if c.off > #s then c.s, c.off = "", 1 end
  return out
end

--- Mark the connection dead and forget it (the server's count included); the socket is the
-- caller's to close, gently or with a reset.
function Conn:detach()
  self.closed = true
  self.state = "dead"
  self.res = nil
  local srv = self.server
  if srv.conns[self] then
    srv.conns[self] = nil
    srv.nconns = srv.nconns - 1
  end
end

--- Detaches the connection and closes its socket (once).
function Conn:close()
  if self.closed then return end
  self:detach()
  if not self.tcp:is_closing() then self.tcp:close() end
end

--- Writes bytes to the socket as they are, unless the connection is closed.
function Conn:send_raw(data)
  if self.closed then return end
  self.tcp:write(data)
end

--- Answer a request the parser could not accept, then close.
function Conn:fail(status, message)
  local body = message .. "\n"
  self:send_raw(build_head(status, { ["Content-Type"] = "text/plain" },
    { "Content-Length: ", tostring(#body), "\r\n", "Connection: close\r\n" }) .. body)
  self.state = "dead"
  self.tcp:shutdown(function() self:close() end)
end

--- Parse the request head in `head` (request line + header lines, no final blank line).
function Conn:parse_head(head)
  local e = find(head, "\r\n", 1, true)
  local line = e and sub(head, 1, e - 1) or head
  local method, target, major, minor = line:match("^(%u+) (%S+) HTTP/(%d)%.(%d)$")
  if not method then return nil, "bad request line" end
  local headers = {}
  local pos = e and e + 2 or #head + 1
  local n = #head
  while pos <= n do
    local le = find(head, "\r\n", pos, true)
    local hl = sub(head, pos, (le or n + 1) - 1)
    pos = (le or n + 1) + 2
    local colon = find(hl, ":", 1, true)
    if not colon or colon == 1 then return nil, "bad header line" end
    local name = lower(sub(hl, 1, colon - 1))
    if find(name, "[%s]") then return nil, "bad header name" end
    local value = hl:match("^[ \t]*(.-)[ \t]*$", colon + 1)
    local old = headers[name]
    headers[name] = old and (old .. ", " .. value) or value
  end
  local path, query = target, ""
  local q = find(target, "?", 1, true)
  if q then path, query = sub(target, 1, q - 1), sub(target, q + 1) end
  local req = {
    method = method, target = target, path = path, query = query, headers = headers,
    version = major .. "." .. minor, conn = self, remote = self.remote,
  }
  local params
  setmetatable(req, { __index = function(t, k)
    if k == "params" then
      params = params or M.parse_query(query)
      rawset(t, "params", params)
      return params
    end
  end })
  local conn_h = headers["connection"] and lower(headers["connection"]) or ""
  if major == "1" and minor == "0" then
    req.keep_alive = find(conn_h, "keep-alive", 1, true) ~= nil
  else
    req.keep_alive = find(conn_h, "close", 1, true) == nil
  end
  return req
end

--- Run the parser over what is buffered; hands complete requests to the handler one at a time.
function Conn:process()
  if self.in_process then return end
  self.in_process = true
  while not self.closed do
    local st = self.state
    if st == "head" then
      if self.avail == 0 then break end
      local s, off = joined(self)
      -- Tolerate stray CRLFs between requests (RFC 9112 2.2).
      while sub(s, off, off + 1) == "\r\n" do
        off = off + 2
        self.avail = self.avail - 2
      end
      self.off = off
      local e = find(s, "\r\n\r\n", off, true)
      if not e then
        if self.avail > M.MAX_HEAD then self:fail(431, "request head too large") end
        break
      end
      if e - off > M.MAX_HEAD then self:fail(431, "request head too large"); break end
      local head = sub(s, off, e - 1)
      take(self, e + 4 - off)
      local req, err = self:parse_head(head)
      if not req then self:fail(400, err); break end
      self.req = req
      self.body_parts, self.body_n = {}, 0
      local te = req.headers["transfer-encoding"]
      local cl = req.headers["content-length"]
      if te and find(lower(te), "chunked", 1, true) then
        self.state = "chunk_size"
      elseif cl then
        local len = cl:match("^%d+$") and tonumber(cl)
        if not len then self:fail(400, "bad content-length"); break end
        if len > self.server.max_body then self:fail(413, "body too large"); break end
        self.need = len
        self.state = len > 0 and "body" or "ready"
      else
        self.state = "ready"
      end
      local expect = req.headers["expect"]
      if expect and lower(expect) == "100-continue" and self.state ~= "ready" then
        self:send_raw("HTTP/1.1 100 Continue\r\n\r\n")
      end
    elseif st == "body" then
      if self.avail < self.need then break end
      self.req.body = take(self, self.need)
      self.state = "ready"
    elseif st == "chunk_size" then
      local s, off = joined(self)
      local e = find(s, "\r\n", off, true)
      if not e then
        if self.avail > 4096 then self:fail(400, "bad chunk size line") end
        break
      end
      local hex = s:match("^(%x+)", off)
      if not hex then self:fail(400, "bad chunk size"); break end
      take(self, e + 2 - off)
      local size = tonumber(hex, 16)
      if size == 0 then
        self.state = "trailer"
      else
        self.body_total = (self.body_total or 0) + size
        if self.body_total > self.server.max_body then self:fail(413, "body too large"); break end
        self.need = size
        self.state = "chunk_data"
      end
    elseif st == "chunk_data" then
      if self.avail < self.need + 2 then break end
      local data = take(self, self.need)
      if take(self, 2) ~= "\r\n" then self:fail(400, "bad chunk terminator"); break end
      self.body_n = self.body_n + 1
      self.body_parts[self.body_n] = data
      self.state = "chunk_size"
    elseif st == "trailer" then
      local s, off = joined(self)
      local e = find(s, "\r\n", off, true)
      if not e then break end
      take(self, e + 2 - off)
      if e == off then
        self.req.body = concat(self.body_parts, "", 1, self.body_n)
        self.body_parts, self.body_total = nil, nil
        self.state = "ready"
      end
    elseif st == "ready" then
      local req = self.req
      self.req = nil
      req.body = req.body or ""
      self.state = "busy"
      self:dispatch(req)
      -- dispatch may have finished synchronously (state back to "head") or left it busy.
      if self.state == "busy" then break end
    else
      break -- busy, hung or dead: wait
    end
  end
  self.in_process = false
  if self.eof and not self.closed and self.state == "head" then self:close() end
end

--- Hands one parsed request to the server's handler with a fresh response; a handler error
-- answers 500 (or resets a response already started).
function Conn:dispatch(req)
  local srv = self.server
  srv.requests = srv.requests + 1
  local res = setmetatable({ conn = self, req = req, head_only = req.method == "HEAD",
    keep_alive = req.keep_alive }, Response)
  self.res = res
  local ok, err = xpcall(function() return srv.handler(req, res) end, debug.traceback)
  if not ok then
    if srv.on_error then
      srv.on_error(err, req)
    else
      io.stderr:write("vidu.emulator.http: handler error: ", tostring(err), "\n")
    end
    if not res.started then
      res:send(500, { ["Content-Type"] = "text/plain" }, "internal error in emulator handler\n")
    elseif not res.done then
      res:reset()
    end
  end
end

--- Called when a response is complete: keep the connection for the next request or close it.
function Conn:done(res)
  if self.res == res then self.res = nil end
  if self.closed then return end
  if not res.keep_alive then
    self.state = "dead"
    self.tcp:shutdown(function() self:close() end)
    return
  end
  self.state = "head"
  if not self.in_process then
    self:process()
  end
end

-- Responses ======================================================================================

--- Head extras the server adds: Date, Connection, framing.
function Response:extras(framing)
  local ex = { "Date: ", http_date(), "\r\n" }
  if framing then
    for i = 1, #framing do ex[#ex + 1] = framing[i] end
  end
  if not self.keep_alive then ex[#ex + 1] = "Connection: close\r\n" end
  return ex
end

-- The handler's own Connection header decides too.
local function note_connection(res, headers)
  local c = header_value(headers, "connection")
  if c and find(lower(c), "close", 1, true) then
    res.keep_alive = false
    return true
  end
  return false
end

--- Send a whole response; Content-Length is set from the body.
function Response:send(status, headers, body)
  if self.started then error("response already started", 2) end
  self.started = true
  body = body or ""
  local has_close = note_connection(self, headers)
  local framing = { "Content-Length: ", tostring(#body), "\r\n" }
  if header_value(headers, "content-length") then framing = nil end
  local ex = self:extras(framing)
  if has_close then ex[#ex] = nil end
  local head = build_head(status, headers, ex)
  local conn = self.conn
  if self.head_only or status == 204 or status == 304 then
    conn:send_raw(head)
  else
    conn:send_raw({ head, body })
  end
  self.done = true
  conn:done(self)
end

--- Start a streamed response: chunked unless headers carry a Content-Length.
function Response:stream(status, headers)
  if self.started then error("response already started", 2) end
  self.started = true
  local has_close = note_connection(self, headers)
  local framing
  if header_value(headers, "content-length") then
    self.chunked = false
  else
    self.chunked = not self.head_only
    framing = { "Transfer-Encoding: chunked\r\n" }
    if self.head_only then framing = nil end
  end
  local ex = self:extras(framing)
  if has_close then ex[#ex] = nil end
  self.conn:send_raw(build_head(status, headers, ex))
end

--- Write a piece of a streamed response.
function Response:write(chunk)
  if not self.started or self.done then error("write outside a streamed response", 2) end
  if self.head_only or chunk == nil or chunk == "" then return end
  if self.chunked then
    self.conn:send_raw({ format("%x\r\n", #chunk), chunk, "\r\n" })
  else
    self.conn:send_raw(chunk)
  end
end

--- End a streamed response.
function Response:finish()
  if self.done then return end
  if not self.started then error("finish before stream", 2) end
  if self.chunked then self.conn:send_raw("0\r\n\r\n") end
  self.done = true
  self.conn:done(self)
end

--- Abort the connection abruptly (TCP RST where luv offers close_reset).
function Response:reset()
  self.done = true
  local conn = self.conn
  if conn.closed then return end
  conn:detach()
  local tcp = conn.tcp
  if tcp:is_closing() then return end
  tcp:read_stop()
  if tcp.close_reset then
    local ok = pcall(tcp.close_reset, tcp)
    if ok then return end
  end
  -- Fallback: SO_LINGER is not reachable from luv; a plain close is the best we can do.
  if not tcp:is_closing() then tcp:close() end
end

--- End the connection gracefully now (FIN after what was written), whatever was promised:
-- a client expecting more body sees the answer cut short.
function Response:close_now()
  self.done = true
  local conn = self.conn
  if conn.closed then return end
  conn.state = "dead"
  conn.res = nil
  conn.tcp:shutdown(function() conn:close() end)
end

--- Never answer; the connection stays open until the peer gives up or the server closes.
function Response:hang()
  self.started = true
  self.hung = true
  self.conn.state = "hung"
end

--- Run fn after ms milliseconds (timer owned by the server, closed with it).
function Response:after(ms, fn)
  return self.conn.server:after(ms, fn)
end

--- Send an in-memory body honouring a Range request header (single range only).
-- Answers 200, 206 with Content-Range, or 416. `headers` should carry the Content-Type.
function M.send_bytes(req, res, headers, data)
  headers = headers or {}
  headers["Accept-Ranges"] = "bytes"
  local total = #data
  local range = req.headers["range"]
  if range and (req.method == "GET" or req.method == "HEAD") then
    local a, b = range:match("^%s*bytes%s*=%s*(%d*)%s*%-%s*(%d*)%s*$")
    if a and (a ~= "" or b ~= "") then
      local first, last
      if a == "" then
        local n = tonumber(b)
        first = total - n
        if first < 0 then first = 0 end
        last = total - 1
      else
        first = tonumber(a)
        last = (b ~= "" and tonumber(b)) or (total - 1)
        if last > total - 1 then last = total - 1 end
      end
      if total == 0 or first > last or first >= total then
        headers["Content-Range"] = "bytes */" .. total
        headers["Content-Type"] = "text/plain"
        return res:send(416, headers, "range not satisfiable\n")
      end
      headers["Content-Range"] = format("bytes %d-%d/%d", first, last, total)
      return res:send(206, headers, sub(data, first + 1, last + 1))
    end
    -- A multi-range or malformed Range header: ignore it and send the whole body (RFC 9110).
  end
  return res:send(200, headers, data)
end

--- Serve a file from disk with Range support (reads it whole; meant for small media).
function M.send_file(req, res, path, headers)
  local f = io.open(path, "rb")
  if not f then
    return res:send(404, { ["Content-Type"] = "text/plain" }, "not found\n")
  end
  local data = f:read("*a")
  f:close()
  return M.send_bytes(req, res, headers, data)
end

-- Server =========================================================================================

local Server = {}
Server.__index = Server

--- Accepts one pending connection and starts reading requests from it.
function Server:accept()
  local tcp = uv.new_tcp()
  local ok = self.tcp:accept(tcp)
  if not ok then tcp:close(); return end
  tcp:nodelay(true)
  local c = setmetatable({
    server = self, tcp = tcp, state = "head",
    s = "", off = 1, pend = {}, np = 0, avail = 0,
  }, Conn)
  self.conns[c] = true
  self.nconns = self.nconns + 1
  self.accepted = self.accepted + 1
  tcp:read_start(function(err, data)
    if err or not data then
      -- Peer closed or failed. Finish what is buffered if a response is still owed.
      c.eof = true
      if err or c.state == "head" or c.state == "hung" or c.state == "dead" then
        c:close()
      elseif c.state ~= "busy" then
        -- A request cut short mid-body: nothing sensible to answer.
        c:close()
      end
      return
    end
    push(c, data)
    if c.state ~= "busy" and c.state ~= "hung" and c.state ~= "dead" then c:process() end
  end)
end

--- Run fn after ms milliseconds; the timer is closed with the server.
function Server:after(ms, fn)
  local t = uv.new_timer()
  self.timers[t] = true
  t:start(math.max(0, math.floor(ms)), 0, function()
    self.timers[t] = nil
    t:close()
    fn()
  end)
  return t
end

--- Stop listening and close every connection and timer.
function Server:close()
  if self.closed then return end
  self.closed = true
  if not self.tcp:is_closing() then self.tcp:close() end
  for c in pairs(self.conns) do c:close() end
  for t in pairs(self.timers) do
    if not t:is_closing() then t:close() end
  end
  self.timers = {}
end

--- Number of open connections.
function Server:connections()
  return self.nconns
end

-- A client that aborts mid-response (a size cap, a canceled download) would kill the process
-- with SIGPIPE on the server's next write; with a handler installed the write just fails.
-- One handler per process, unref'd so it never keeps the loop alive by itself.
local sigpipe
local function ignore_sigpipe()
  if sigpipe and not sigpipe:is_closing() then return end
  sigpipe = uv.new_signal()
  sigpipe:start("sigpipe", function() end)
  sigpipe:unref()
end

--- Create a listening server. opts: host, port (0 = free port), handler(req, res),
-- backlog (default 4096), max_body, on_error(err, req) (a handler raised; default: stderr).
function M.server(opts)
  assert(type(opts) == "table", "http.server{...} expects a table")
  assert(type(opts.handler) == "function", "http.server needs a handler function")
  ignore_sigpipe()
  local srv = setmetatable({
    host = opts.host or "127.0.0.1", handler = opts.handler, conns = {}, nconns = 0,
    timers = {}, requests = 0, accepted = 0, max_body = opts.max_body or M.MAX_BODY,
    on_error = opts.on_error,
  }, Server)
  srv.tcp = uv.new_tcp()
  local ok, err = srv.tcp:bind(srv.host, opts.port or 0)
  if not ok then
    srv.tcp:close()
    return nil, err
  end
  ok, err = srv.tcp:listen(opts.backlog or 4096, function(lerr)
    if lerr then return end
    srv:accept()
  end)
  if not ok then
    srv.tcp:close()
    return nil, err
  end
  local addr = srv.tcp:getsockname()
  srv.port = addr.port
  srv.url = "http://" .. srv.host .. ":" .. srv.port
  return srv
end

return M
