-- bench/stream_inline.lua: what sending a large image inline costs in peak memory, streamed
-- (the engine base64-encodes the file as it sends it: body_parts) against the string body
-- the project built before (the data: URI as a Lua string inside the JSON, which the engine
-- then copies).
--
-- Each measurement runs in a child process of its own that reads its peak RSS (VmHWM, from
-- /proc/self/status) after start-up and a warm-up request, sends the one large body, and
-- reads it again: the difference is what the send cost. Two paths:
--   engine   core.engine directly, a 50 MB file (no provider takes 50 MB inline: their
--            inline limits are 10-14 MB) as a JSON body {"image":"data:...","prompt":...}
--            POSTed to the loopback test server (spec/support/testserver.lua);
--   client   a whole submit through vidu.client("vtrix") to the emulator with a 13.9 MB
--            image, the largest any route takes inline (Vtrix: under 14 MB).
-- Prints figures; asserts nothing. Usage: make bench (or: lua bench/stream_inline.lua [MB])
package.path = "spec/?.lua;" .. package.path
local core = require("vidu.core")

local MB = 1000 * 1000

-- The process's peak and current resident set, in bytes (Linux /proc).
local function rss()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)")) * 1024, tonumber(s:match("VmRSS:%s*(%d+)")) * 1024
end

-- A real PNG made `n` bytes long by bytes after its IEND (readers stop at IEND), varied so
-- the base64 is too.
local function big_png(path, n)
  local f = assert(io.open("spec/fixtures/png_640x360.png", "rb"))
  local png = f:read("*a")
  f:close()
  local block = {}
  for i = 0, 65535 do block[#block + 1] = string.char((i * 7919 + math.floor(i / 97)) % 256) end
  block = table.concat(block)
  f = assert(io.open(path, "wb"))
  f:write(png)
  local left = n - #png
  while left > 0 do
    local k = math.min(left, #block)
    f:write(k == #block and block or block:sub(1, k))
    left = left - k
  end
  f:close()
end

-- One finished transfer.
local function drive(engine, id)
  while true do
    for _, r in ipairs(engine:wait(1000)) do
      if r.id == id then return r end
    end
  end
end

-- Child: the engine path. mode "stream" or "string".
local function child_engine(mode, url, path, size)
  local json = require("vidu.json")
  local engine = core.engine{}
  local warm = drive(engine, engine:request{ method = "POST", url = url, body = "{}" })
  assert(warm.ok, warm.message)
  collectgarbage("collect")
  local hwm0 = rss()
  local cpu0, t0 = os.clock(), core.now()
  local req = { method = "POST", url = url, headers = { ["Content-Type"] = "application/json" } }
  local body = { image = "", prompt = "a large image, inline" }
  if mode == "stream" then
    -- What vidu.http does: the JSON around a placeholder, split, the file as a part.
    body.image = "data:image/png;base64,@@IMAGE@@"
    local text = json.encode(body)
    local i, j = text:find("@@IMAGE@@", 1, true)
    req.body_parts = { text:sub(1, i - 1), { file = path, base64 = true, size = size },
      text:sub(j + 1) }
  else
    -- What it did before: the data: URI as a string, inside the JSON text.
    body.image = assert(core.data_uri_file(path, "image/png"))
    req.body = json.encode(body)
  end
  local r = drive(engine, engine:request(req))
  assert(r.ok and r.status == 200, tostring(r.message or r.status))
  local wall, cpu = core.now() - t0, os.clock() - cpu0
  req, body = nil, nil -- luacheck: ignore 311
  local hwm1 = rss()
  print(string.format("%d %d %.3f %.3f", hwm0, hwm1, wall, cpu))
end

-- Child: a submit through the vtrix driver. mode "stream" or "string" (images.STREAM_FROM
-- above any size: the string body).
local function child_client(mode, url, path)
  local vidu = require("vidu")
  local images = require("vidu.images")
  if mode == "string" then images.STREAM_FROM = math.huge end
  local client = vidu.client("vtrix", { api_key = "bench-key-0123456789", base_url = url })
  assert(client:submit{ image = "spec/fixtures/png_640x360.png", prompt = "warm-up" })
  collectgarbage("collect")
  local hwm0 = rss()
  local cpu0, t0 = os.clock(), core.now()
  local task = assert(client:submit{ image = path, prompt = "a large image, inline" })
  assert(task.id)
  local wall, cpu = core.now() - t0, os.clock() - cpu0
  local hwm1 = rss()
  print(string.format("%d %d %.3f %.3f", hwm0, hwm1, wall, cpu))
end

if arg and arg[1] == "--child" then
  local which, mode, url, path, size = arg[2], arg[3], arg[4], arg[5], tonumber(arg[6])
  if which == "engine" then child_engine(mode, url, path, size) else child_client(mode, url, path) end
  os.exit(0)
end

local LUA = os.getenv("VIDU_LUA") or "lua5.4"
local ENGINE_MB = tonumber(arg and arg[1]) or 50
local CLIENT_BYTES = 13900000

-- Runs a child and returns its four figures.
local function measure(which, mode, url, path, size)
  local cmd = string.format("%s bench/stream_inline.lua --child %s %s %s %s %d", LUA, which,
    mode, url, path, size or 0)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  local h0, h1, wall, cpu = out:match("^(%d+) (%d+) (%S+) (%S+)")
  if not h0 then error("child failed: " .. cmd .. "\n" .. out, 0) end
  return tonumber(h0), tonumber(h1), tonumber(wall), tonumber(cpu)
end

local function row(label, h0, h1, wall, cpu)
  print(string.format("  %-34s peak RSS %7.1f MB -> %7.1f MB   +%6.1f MB   %.2f s wall, %.2f s CPU",
    label, h0 / MB, h1 / MB, (h1 - h0) / MB, wall, cpu))
end

local function loadavg()
  local f = io.open("/proc/loadavg", "r")
  if not f then return "?" end
  local s = f:read("*l")
  f:close()
  return s:match("^(%S+)")
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local servers = {}
local ok, err = pcall(function()
  print(string.format("stream_inline: %s%s, load average %s", _VERSION,
    jit and (" / " .. jit.version) or "", loadavg()))

  local testserver = require("support.testserver_process")
  local srv = testserver.start()
  servers[#servers + 1] = srv
  local size = ENGINE_MB * MB
  local path = dir .. "/big.png"
  big_png(path, size)
  local enc = 4 * math.ceil(size / 3)
  print(string.format("engine: a %d MB file (%.1f MB of base64) POSTed as JSON to the loopback"
    .. " test server", ENGINE_MB, enc / MB))
  row("streamed (body_parts)", measure("engine", "stream", srv.url .. "/status/200", path, size))
  row("string body (data_uri_file + JSON)", measure("engine", "string", srv.url .. "/status/200", path, size))
  os.remove(path)

  local emulator = require("support.emulator")
  local emu = emulator.start{ seed = 1 }
  servers[#servers + 1] = emu
  path = dir .. "/vtrix.png"
  big_png(path, CLIENT_BYTES)
  print(string.format("client: vidu.client(\"vtrix\"):submit, a %.1f MB PNG inline (%.1f MB of"
    .. " base64), emulator on loopback", CLIENT_BYTES / MB, 4 * math.ceil(CLIENT_BYTES / 3) / MB))
  row("streamed (images.field)", measure("client", "stream", emu.url, path))
  row("string body (STREAM_FROM = huge)", measure("client", "string", emu.url, path))
end)
for _, s in ipairs(servers) do s:stop() end
os.execute("rm -rf " .. dir)
if not ok then error(err, 0) end
