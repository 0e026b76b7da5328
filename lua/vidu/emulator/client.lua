--- A minimal asynchronous HTTP/1.1 client on luv, for webhook deliveries (http:// only; one
-- request per connection).
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local uv = require("luv")

local M = {}

--- Split an http URL -> host, port, target | nil, err.
function M.parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "not an absolute URL" end
  if scheme:lower() ~= "http" then return nil, "unsupported scheme " .. scheme end
  local authority, target = rest:match("^([^/?#]*)(.*)$")
  target = target:gsub("#.*$", "")
  if target == "" or target:sub(1, 1) == "?" then target = "/" .. target end
  local host, port = authority:match("^%[(.+)%]:(%d+)$")
  if not host then host, port = authority:match("^([^:]+):(%d+)$") end
  if not host then host = authority:match("^%[(.+)%]$") or authority end
  if host == "" then return nil, "URL without a host" end
  return host, tonumber(port) or 80, target
end

--- POST/GET/... `url`. opts: method, headers (table), body, timeout (s, default 10).
-- cb(status | nil, err, headers, body).
function M.request(opts, cb)
  local host, port, target = M.parse_url(opts.url)
  if not host then return cb(nil, port) end
  local done = false
  local tcp, timer
  local function finish(status, err, headers, body)
    if done then return end
    done = true
    if timer and not timer:is_closing() then timer:close() end
    if tcp and not tcp:is_closing() then tcp:close() end
    cb(status, err, headers, body)
  end
  timer = uv.new_timer()
  timer:start(math.floor((opts.timeout or 10) * 1000), 0, function() finish(nil, "timeout") end)
  uv.getaddrinfo(host, tostring(port), { socktype = "stream" }, function(gerr, addrs)
    if done then return end
    if gerr or not addrs or not addrs[1] then return finish(nil, "resolve: " .. tostring(gerr)) end
    tcp = uv.new_tcp()
    tcp:connect(addrs[1].addr, addrs[1].port or port, function(cerr)
      if done then return end
      if cerr then return finish(nil, "connect: " .. tostring(cerr)) end
      local body = opts.body or ""
      local lines = { (opts.method or "POST") .. " " .. target .. " HTTP/1.1",
        "Host: " .. host .. ((port ~= 80) and (":" .. port) or ""),
        "Content-Length: " .. #body, "Connection: close", "User-Agent: vidu-emulator" }
      for k, v in pairs(opts.headers or {}) do lines[#lines + 1] = k .. ": " .. v end
      tcp:write(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
      local chunks = {}
      tcp:read_start(function(rerr, data)
        if rerr then return finish(nil, "read: " .. tostring(rerr)) end
        if data then chunks[#chunks + 1] = data; return end
        local all = table.concat(chunks)
        local status = tonumber(all:match("^HTTP/%d%.%d (%d%d%d)"))
        if not status then return finish(nil, "bad response") end
        local head_end = all:find("\r\n\r\n", 1, true)
        local headers = {}
        local head = head_end and all:sub(1, head_end - 1) or all
        for name, value in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do headers[name:lower()] = value end
        finish(status, nil, headers, head_end and all:sub(head_end + 4) or "")
      end)
    end)
  end)
end

return M
