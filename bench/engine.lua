-- bench/engine.lua: small GETs through one vidu.core engine against the loopback test server
-- (spec/support/testserver.lua), keeping a fixed number in flight.
--
-- Prints requests/s over the wall clock, the CPU seconds of this process (the engine and the
-- Lua around it) and of the server process (read from /proc; a luv server in Lua, so usually
-- the bottleneck), and how many connections were opened (libcurl reuses them). Figures only;
-- nothing is asserted.
--
-- Usage: make bench  (or: lua bench/engine.lua [N [CONCURRENCY]])
package.path = "spec/?.lua;" .. package.path
local core = require("vidu.core")
local testserver = require("support.testserver_process")

local N = tonumber(arg and arg[1]) or 2000
local CONCURRENCY = tonumber(arg and arg[2]) or 64
local now = core.now or os.time

-- utime + stime of a process in seconds, from /proc (nil where there is no /proc).
local function process_cpu(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return nil end
  local stat = f:read("*a")
  f:close()
  -- Fields after the ")" that ends the command name: utime and stime are the 12th and 13th.
  local rest = stat:match("%)%s+(.*)$")
  local fields = {}
  for v in rest:gmatch("%S+") do fields[#fields + 1] = v end
  local ticks = 100 -- USER_HZ on Linux
  return (tonumber(fields[12]) + tonumber(fields[13])) / ticks
end

local function run(srv, engine, n, concurrency)
  local started, done, failed, connects = 0, 0, 0, 0
  local function start_one()
    started = started + 1
    engine:request{ url = srv.url .. "/status/200" }
  end
  while started < concurrency and started < n do start_one() end
  while done < n do
    for _, r in ipairs(engine:wait(1000)) do
      done = done + 1
      if not (r.ok and r.status == 200) then failed = failed + 1 end
      connects = connects + (r.connects or 0)
      if started < n then start_one() end
    end
  end
  return failed, connects
end

local srv = testserver.start()
local ok, err = pcall(function()
  local engine = core.engine{ max_host_connections = CONCURRENCY }
  run(srv, engine, math.min(200, N), CONCURRENCY) -- warm up: connections, JIT, allocator

  local server_cpu0 = process_cpu(srv.pid)
  local cpu0, t0 = os.clock(), now()
  local failed, connects = run(srv, engine, N, CONCURRENCY)
  local wall, cpu = now() - t0, os.clock() - cpu0
  local server_cpu1 = process_cpu(srv.pid)
  engine:close()

  print(string.format("engine: %d GETs, %d in flight, %s", N, CONCURRENCY, _VERSION ..
    (jit and (" / " .. jit.version) or "")))
  print(string.format("  %10.0f requests/s   (%.3f s wall)", N / wall, wall))
  print(string.format("  %10.3f CPU s in the client   (%.1f us per request)", cpu, cpu / N * 1e6))
  if server_cpu0 and server_cpu1 then
    print(string.format("  %10.3f CPU s in the server", server_cpu1 - server_cpu0))
  end
  print(string.format("  %10d new connections (after warm-up)", connects))
  print(string.format("  %10d failed", failed))
end)
srv:stop()
if not ok then error(err, 0) end
