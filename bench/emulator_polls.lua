-- Emulator throughput: status polls per second over many keep-alive connections driven by
-- vidu.core's engine, then a check that thousands of connections can be held open at once
-- (while polls still get answered).
--
--   make bench            (or: LUA_PATH=... LUA_CPATH=... lua5.4 bench/emulator_polls.lua)
-- Environment: POLL_SECONDS (default 3), POLL_CONNECTIONS (default 64), HOLD_CONNECTIONS (5000).
local uv = require("luv")
local core = require("vidu.core")
local cjson = require("cjson")

local SECONDS = tonumber(os.getenv("POLL_SECONDS")) or 3
local CONNS = tonumber(os.getenv("POLL_CONNECTIONS")) or 64
local HOLD = tonumber(os.getenv("HOLD_CONNECTIONS")) or 5000
local TASKS = 200

local function root_dir()
  local src = debug.getinfo(1, "S").source
  return src:match("^@(.*)/bench/[^/]*$") or "."
end

local emu = require("vidu.launch").start{ args = { "--polls", "1000000000" } }
local url = emu.url

local engine = core.engine{ max_host_connections = CONNS, max_total_connections = CONNS }

local function blocking(t)
  local id = engine:request(t)
  while true do
    for _, item in ipairs(engine:wait(100)) do
      if item.id == id then return item end
    end
  end
end

local function stop()
  emu:stop()
  engine:close()
end

-- Tasks to poll (Vidu official), never finishing during the run.
local png = io.open(root_dir() .. "/spec/fixtures/png_33x17.png", "rb"):read("*a")
local body = cjson.encode({ model = "viduq1", images = { "data:image/png;base64," .. core.b64encode(png) },
  prompt = "bench" })
local ids = {}
for i = 1, TASKS do
  local r = blocking{ method = "POST", url = url .. "/ent/v2/img2video", body = body,
    headers = { Authorization = "Token bench", ["Content-Type"] = "application/json" } }
  assert(r.ok and r.status == 200, "submit failed: " .. tostring(r.status or r.message))
  ids[i] = cjson.decode(r.body).task_id
end

-- Keep CONNS polls in flight for SECONDS; count the answers.
local headers = { Authorization = "Token bench" }
local n, bad, next_task = 0, 0, 1
local function fire()
  local id = ids[next_task]
  next_task = next_task % TASKS + 1
  engine:request{ url = url .. "/ent/v2/tasks/" .. id .. "/creations", headers = headers }
end
local t0 = core.now()
for _ = 1, CONNS do fire() end
local deadline = t0 + SECONDS
while true do
  local done = engine:wait(10)
  for _, item in ipairs(done) do
    if item.ok and item.status == 200 then n = n + 1 else bad = bad + 1 end
    if core.now() < deadline then fire() end
  end
  if engine:pending() == 0 then break end
end
local elapsed = core.now() - t0
print(string.format("emulator status polls: %d in %.2f s over %d keep-alive connections = %.0f polls/s "
  .. "(%d failed)", n, elapsed, CONNS, n / elapsed, bad))

-- Thousands of idle connections held open at once.
local clients, connected, failed = {}, 0, 0
local host, port = url:match("^http://([^:]+):(%d+)")
for i = 1, HOLD do
  local c = uv.new_tcp()
  clients[i] = c
  c:connect(host, tonumber(port), function(err)
    if err then failed = failed + 1 else connected = connected + 1 end
  end)
end
local wait_until = core.now() + 30
while connected + failed < HOLD and core.now() < wait_until do
  uv.run("nowait")
  uv.sleep(1)
end
-- The emulator accepts asynchronously; ask it until it has counted them all.
local held
wait_until = core.now() + 30
repeat
  local r = blocking{ url = url .. "/_emulator/health" }
  held = cjson.decode(r.body).connections
until held >= HOLD or core.now() > wait_until
local r = blocking{ url = url .. "/ent/v2/tasks/" .. ids[1] .. "/creations", headers = headers }
print(string.format("connections held open: %d of %d (connect failures: %d); a poll meanwhile: HTTP %s",
  held, HOLD, failed, tostring(r.status)))
for _, c in ipairs(clients) do c:close() end
uv.run("nowait")
stop()
if held < HOLD or r.status ~= 200 then os.exit(1) end
