--- make test-hosts: vidu in the real hosts, each against the offline emulator.
--
--   lua5.4 spec/hosts/run.lua      (from the project root; the Makefile target prepares it)
--
--   * headless Neovim (spec/hosts/nvim.lua) through vidu.hosts.luv;
--   * nginx with its Lua module (spec/hosts/nginx.conf, one worker) through vidu.hosts.ngx:
--     50 concurrent /gen requests, each a generation, while /fast is probed every 50 ms;
--   * examples/host.c, a 60 fps frame loop calling vidu.step(), with 1,000 generations.
-- Completion, no crash and a clean error log are asserted; timings are printed, never
-- asserted. Ends with "N passed, N failed".
local core = require("vidu.core")
local launch = require("vidu.launch")
local uv = require("luv")

local ROOT = os.getenv("PWD")
local BUILD = ROOT .. "/build/hosts"
local DEBROOT = os.getenv("VIDU_DEBROOT") or (BUILD .. "/root")
local NGINX_GENS, PROBE_EVERY = 50, 0.05
local HOST_GENS = tonumber(os.getenv("VIDU_HOST_GENS")) or 1000
local NVIM_GENS = tonumber(os.getenv("VIDU_NVIM_GENS")) or 200

local passed, failed = 0, 0
local function check(ok, what)
  if ok then passed = passed + 1 else failed = failed + 1 end
  print((ok and "ok   " or "FAIL ") .. what)
  io.stdout:flush()
end

local q = launch.shell_quote

-- Runs a shell command; returns success and its output (stdout and stderr).
local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local text = p:read("*a")
  local a, _, c = p:close()
  local ok = (a == true or a == 0) and (c == nil or c == 0)
  return ok, text
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function free_port()
  local s = uv.new_tcp()
  assert(s:bind("127.0.0.1", 0))
  local port = s:getsockname().port
  s:close()
  uv.run("nowait")
  return port
end

local function alive(pid)
  local stat = read("/proc/" .. pid .. "/stat")
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

local function percentile(sorted, p)
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

os.execute("mkdir -p " .. q(BUILD))
local emu = launch.start{
  lua = "lua5.4", args = { "--no-ffmpeg" },
  config = { progress = "time", seconds = 1, log_limit = 100000 },
}
print("emulator at " .. emu.url .. " (every generation takes 1 s)")

---------------------------------------------------------------------------------------------
-- Neovim

do
  local _, version = sh("nvim --version | head -n 1")
  print("== Neovim: " .. version:gsub("%s+$", "") .. ", " .. NVIM_GENS .. " generations")
  local report = BUILD .. "/nvim-report.txt"
  os.remove(report)
  local t0 = core.now()
  local ok, text = sh(("VIDU_ROOT=%s VIDU_EMU_URL=%s VIDU_OUT=%s VIDU_GENS=%d timeout 180 " ..
    "nvim --headless -u NONE -i NONE -n -c %s </dev/null"):format(q(ROOT), q(emu.url), q(report),
    NVIM_GENS, q("luafile " .. ROOT .. "/spec/hosts/nvim.lua")))
  local lines = read(report) or ""
  local any = false
  for line in lines:gmatch("[^\n]+") do
    any = true
    local status, what = line:match("^(%a+) (.*)$")
    check(status == "ok", what or line)
  end
  check(ok and any, ("nvim: exited cleanly in %.1f s"):format(core.now() - t0) ..
    (ok and "" or (": " .. text)))
end

---------------------------------------------------------------------------------------------
-- nginx

do
  local prefix = BUILD .. "/nginx"
  local libdir = sh("ls -d " .. q(DEBROOT) .. "/usr/lib/*/libluajit-5.1.so.2") and
    select(2, sh("dirname " .. q(DEBROOT) .. "/usr/lib/*/libluajit-5.1.so.2")):gsub("%s+$", "")
  local nginx = DEBROOT .. "/usr/sbin/nginx"
  local env = "LD_LIBRARY_PATH=" .. q(libdir or "") .. " VIDU_API_KEY=nginx-key VIDU_BASE_URL=" ..
    q(emu.url) .. " VIDU_IMAGE=" .. q(ROOT .. "/spec/fixtures/png_33x17.png") ..
    " VIDU_OUT=" .. q(BUILD .. "/nginx-videos")
  local _, version = sh(env .. " " .. q(nginx) .. " -v")
  print("== nginx: " .. version:gsub("%s+$", "") .. ", one worker, " .. NGINX_GENS ..
    " concurrent /gen while /fast is probed every " .. PROBE_EVERY * 1000 .. " ms")
  os.execute("rm -rf " .. q(prefix) .. " && mkdir -p " .. q(prefix .. "/tmp"))
  local port = free_port()
  local is_root = select(2, sh("id -u")):match("^0") ~= nil
  local conf = assert(read(ROOT .. "/spec/hosts/nginx.conf"))
  conf = conf:gsub("@(%u+)@", {
    ROOT = ROOT, PREFIX = prefix, DEBROOT = DEBROOT, PORT = tostring(port),
    -- As root the worker would become "nobody"; keep it this user so it reads the build.
    USER = is_root and "user root;" or "",
  })
  write(prefix .. "/nginx.conf", conf)
  local started, out = sh(env .. " " .. q(nginx) .. " -p " .. q(prefix) .. " -c " ..
    q(prefix .. "/nginx.conf") .. " -e " .. q(prefix .. "/error.log"))
  check(started, "nginx: started" .. (started and "" or (": " .. out)))
  if started then
    local base = "http://127.0.0.1:" .. port
    local engine = core.engine{ max_host_connections = NGINX_GENS + 10 }
    local function fetch(path, timeout)
      local id = engine:request{ url = base .. path, timeout = timeout or 10 }
      local deadline = core.now() + (timeout or 10) + 5
      while core.now() < deadline do
        for _, item in ipairs(engine:wait(20)) do if item.id == id then return item end end
      end
    end
    -- Up when /about answers (the master has forked its worker).
    local about
    local deadline = core.now() + 10
    repeat
      about = fetch("/about", 2)
    until (about and about.ok and about.status == 200) or core.now() > deadline
    about = about and about.body or ""
    print("nginx: worker " .. about:gsub("%s+$", ""))
    local worker_pid = about:match("^(%d+)")
    check(worker_pid ~= nil, "nginx: the worker answers")

    local blocked = fetch("/block")
    local refusal = (blocked and blocked.body or "no answer"):gsub("%s+$", "")
    check(refusal:find("would block nginx's loop", 1, true) ~= nil,
      "nginx: a wait outside a vidu coroutine is refused: " .. refusal)

    -- A baseline: /fast alone for a second, so the figure under load can be read against
    -- what this machine does anyway.
    local base_max, base_n = 0, 0
    for _ = 1, 20 do
      local t = core.now()
      local item = fetch("/fast")
      if item and item.ok then
        base_n = base_n + 1
        if item.time.total > base_max then base_max = item.time.total end
      end
      while core.now() - t < PROBE_EVERY do engine:wait(5) end
    end
    print(("nginx: /fast alone, %d probes: max %.1f ms"):format(base_n, base_max * 1000))

    local gens, pending = {}, 0
    local t0 = core.now()
    for i = 1, NGINX_GENS do
      gens[engine:request{ url = base .. "/gen?prompt=nginx+" .. i, timeout = 120 }] = i
      pending = pending + 1
    end
    local ok_gens, fast, fast_failed, probes = 0, {}, 0, 0
    local probing, next_probe = {}, core.now()
    deadline = core.now() + 150
    while (pending > 0 or next(probing)) and core.now() < deadline do
      if pending > 0 and core.now() >= next_probe then
        probing[engine:request{ url = base .. "/fast", timeout = 10 }] = true
        probes = probes + 1
        next_probe = next_probe + PROBE_EVERY
      end
      for _, item in ipairs(engine:wait(5)) do
        if gens[item.id] then
          pending = pending - 1
          if item.ok and item.status == 200 and item.body:match("^done %S+ succeeded") then
            ok_gens = ok_gens + 1
          else
            print("nginx: /gen " .. gens[item.id] .. ": " .. tostring(item.ok and item.body or item.message))
          end
        elseif probing[item.id] then
          probing[item.id] = nil
          if item.ok and item.status == 200 then fast[#fast + 1] = item.time.total
          else fast_failed = fast_failed + 1 end
        end
      end
    end
    local wall = core.now() - t0
    check(ok_gens == NGINX_GENS, ("nginx: %d of %d generations done in %.1f s"):format(ok_gens,
      NGINX_GENS, wall))
    table.sort(fast)
    check(fast_failed == 0 and #fast > 0, ("nginx: /fast answered %d of %d probes; latency " ..
      "median %.1f ms, p99 %.1f ms, max %.1f ms"):format(#fast, probes,
      (percentile(fast, 0.5) or 0) * 1000, (percentile(fast, 0.99) or 0) * 1000,
      (fast[#fast] or 0) * 1000))
    -- Webhooks (examples/nginx-webhook.conf): generations finished by their verified
    -- callbacks, with polling as the slow fallback only: the emulator sees no poll for them.
    local function polls()
      local id = engine:request{ url = emu.url .. "/_emulator/log?method=GET&match=/creations$" }
      local until_t = core.now() + 15
      while core.now() < until_t do
        for _, item in ipairs(engine:wait(20)) do
          if item.id == id then
            local n = 0
            for _ in (item.body or ""):gmatch('"method"') do n = n + 1 end
            return n
          end
        end
      end
    end
    local polls_before = polls()
    sh("rm -rf " .. q(BUILD .. "/nginx-videos") .. " && mkdir -p " .. q(BUILD .. "/nginx-videos"))
    local cb = fetch("/gen-callback?n=10", 120)
    check(cb ~= nil and cb.status == 200 and cb.body:match("^done 10") ~= nil,
      "nginx: 10 generations finished by their verified callbacks (/webhooks/vidu): " ..
        tostring(cb and cb.body or "no answer"):gsub("%s+$", ""))
    check(polls_before ~= nil and polls() == polls_before,
      "nginx: and not one poll was sent for them")
    local _, listing = sh("ls " .. q(BUILD .. "/nginx-videos"))
    local mp4s = 0
    for name in listing:gmatch("[^\n]+") do
      local head = read(BUILD .. "/nginx-videos/" .. name)
      if head and head:sub(5, 8) == "ftyp" then mp4s = mp4s + 1 end
    end
    check(mp4s == 10, ("nginx: the 10 videos downloaded by the worker are MP4s (%d)"):format(mp4s))

    local after = fetch("/about")
    print("nginx: worker " .. (after and after.body or ""):gsub("%s+$", ""))
    check(after and after.body:match("^(%d+)") == worker_pid,
      "nginx: the same worker served everything (no crash, no respawn)")
    engine:close()

    -- Stop gracefully: the scheduler's timer sees the worker exiting and ends.
    local master = (read(prefix .. "/nginx.pid") or ""):match("%d+")
    if master then
      os.execute("kill -QUIT " .. master)
      deadline = core.now() + 15
      while alive(master) and core.now() < deadline do uv.sleep(50) end
      check(not alive(master), "nginx: stopped gracefully")
      if alive(master) then os.execute("kill -KILL " .. master) end
    end
    local log = read(prefix .. "/error.log") or ""
    local bad = {}
    for line in log:gmatch("[^\n]+") do
      if line:find("%[emerg%]") or line:find("%[alert%]") or line:find("%[crit%]") or
        line:find("%[error%]") or line:find("signal") or line:find("exited") then
        bad[#bad + 1] = line
      end
    end
    check(#bad == 0, "nginx: nothing in the error log" .. (#bad == 0 and "" or (":\n  " ..
      table.concat(bad, "\n  ", 1, math.min(#bad, 10)))))
  end
end

---------------------------------------------------------------------------------------------
-- The C frame loop

do
  print("== examples/host.c: " .. HOST_GENS .. " generations, vidu.step() once per 60 fps frame")
  local env = ("LUA_PATH=%s LUA_CPATH=%s"):format(q(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"),
    q(ROOT .. "/build/lua5.4/?.so;;"))
  local ok, out = sh(("%s timeout 300 %s %s %d %s"):format(env, q(BUILD .. "/host"), q(emu.url), HOST_GENS,
    q(ROOT .. "/spec/fixtures/png_33x17.png")))
  io.write(out)
  check(ok and out:find(("%d done, 0 failed"):format(HOST_GENS), 1, true) ~= nil,
    "host.c: every generation done")
end

emu:stop()
print()
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
