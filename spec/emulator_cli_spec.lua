-- bin/vidu-emulator as a command: its first stdout line, its options and config files, and a
-- clean exit on SIGTERM/SIGINT. Each run is a small shell script that waits (with a deadline)
-- for the URL line, talks to the emulator with curl-free engine calls, then signals it.
local core = require("vidu.core")
local cjson = require("cjson")
local util = require("support.util")
local read, write = util.read_file_if_exists, util.write_file

local LUA = os.getenv("VIDU_LUA") or "lua5.4"

-- One GET on a fresh engine, driven to its end (15 s at most).
local function get(url)
  local engine = core.engine{}
  local ok, item = pcall(util.fetch, engine, { url = url, timeout = 10 }, 15)
  engine:close()
  if not ok then error("no answer from " .. url .. ": " .. tostring(item), 2) end
  return item
end

local function sleep_ms(ms)
  util.luv().sleep(ms)
end

-- Start the emulator in the background with a shell; returns a handle with url/out/err files.
local function start(args, env)
  local out, err, pidf = os.tmpname(), os.tmpname(), os.tmpname()
  local cmd = string.format("%s %s bin/vidu-emulator %s >%s 2>%s & echo $! >%s", env or "", LUA, args or "",
    out, err, pidf)
  os.execute(cmd)
  local h = { out = out, err = err, pidf = pidf }
  local deadline = core.now() + 15
  repeat
    local s = read(out) or ""
    h.url = s:match("^(http://[^\n]+)\n")
    if h.url then break end
    sleep_ms(10)
  until core.now() > deadline
  h.pid = tonumber(read(pidf))
  return h
end

-- Is the process gone? (It is not our child: the shell that started it has exited.)
local function gone(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return true end
  local stat = f:read("*l") or ""
  f:close()
  return stat:match("^%d+ %b() (%a)") == "Z"
end

local function signal_and_wait(h, sig)
  os.execute("kill -" .. sig .. " " .. h.pid)
  local deadline = core.now() + 10
  while not gone(h.pid) and core.now() < deadline do sleep_ms(10) end
  return gone(h.pid)
end

local function cleanup(h)
  if h.pid and not gone(h.pid) then os.execute("kill -KILL " .. h.pid) end
  os.remove(h.out); os.remove(h.err); os.remove(h.pidf)
end

describe("bin/vidu-emulator", function()
  it("prints its base URL first, serves, and exits cleanly on SIGTERM", function()
    local h = start("--port 0 --seed 5")
    assert.is_string(h.url, read(h.err))
    assert.matches("^http://127%.0%.0%.1:%d+$", h.url)
    local health = cjson.decode(get(h.url .. "/_emulator/health").body)
    assert.is_true(health.ok)
    assert.are.equal(h.url, health.url)
    assert.is_true(signal_and_wait(h, "TERM"))
    assert.are.equal(h.url .. "\n", read(h.out))
    assert.are.equal("", read(h.err))
    assert.is_nil(io.open(health.dir .. "/fal-webhook-key.pem", "r"))
    cleanup(h)
  end)

  it("exits cleanly on SIGINT", function()
    local h = start("--port 0")
    assert.is_string(h.url)
    assert.is_true(signal_and_wait(h, "INT"))
    assert.are.equal("", read(h.err))
    cleanup(h)
  end)

  it("finds its modules without LUA_PATH", function()
    local h = start("--port 0", "env -u LUA_PATH")
    assert.is_string(h.url, read(h.err))
    assert.is_true(signal_and_wait(h, "TERM"))
    cleanup(h)
  end)

  it("takes run-level settings from flags", function()
    local h = start("--port 0 --polls 7 --outcome failed --progress time --seconds 9")
    local cfg = cjson.decode(get(h.url .. "/_emulator/config").body).config
    assert.are.equal(7, cfg.polls)
    assert.are.equal("failed", cfg.outcome)
    assert.are.equal("time", cfg.progress)
    assert.are.equal(9, cfg.seconds)
    signal_and_wait(h, "TERM")
    cleanup(h)
  end)

  it("reads a JSON or a Lua config file, faults included", function()
    local json_path, lua_path = os.tmpname(), os.tmpname()
    write(json_path, '{"polls": 4, "faults": [{"path": "/ent/v2/img2video", "kind": "html_502"}]}')
    write(lua_path, 'return { polls = 6, keys = { vidu = { "k" } } }')
    local h = start("--port 0 --config " .. json_path)
    assert.are.equal(4, cjson.decode(get(h.url .. "/_emulator/config").body).config.polls)
    assert.are.equal(1, #cjson.decode(get(h.url .. "/_emulator/faults").body).faults)
    signal_and_wait(h, "TERM")
    cleanup(h)
    h = start("--port 0 --config " .. lua_path)
    assert.are.equal(6, cjson.decode(get(h.url .. "/_emulator/config").body).config.polls)
    signal_and_wait(h, "TERM")
    cleanup(h)
    os.remove(json_path); os.remove(lua_path)
  end)

  it("listens on the port it is given", function()
    -- Find a free port by letting the emulator pick one, then ask for it again.
    local h = start("--port 0")
    local port = h.url:match(":(%d+)$")
    signal_and_wait(h, "TERM")
    cleanup(h)
    h = start("--port " .. port)
    assert.are.equal("http://127.0.0.1:" .. port, h.url, read(h.err))
    signal_and_wait(h, "TERM")
    cleanup(h)
  end)

  it("rejects unknown arguments with a usage message", function()
    local p = io.popen(LUA .. " bin/vidu-emulator --bogus 2>&1; echo \"exit=$?\"")
    local out = p:read("*a")
    p:close()
    assert.matches("usage:", out)
    assert.matches("exit=2", out)
  end)
end)
