-- Headless Neovim through vidu.hosts.luv (run by spec/hosts/run.lua):
--   nvim --headless -u NONE -i NONE -n -c "luafile spec/hosts/nvim.lua"
-- Env: VIDU_ROOT (the project), VIDU_EMU_URL (the emulator), VIDU_OUT (a report file),
-- VIDU_GENS (the batch, default 200).
--
-- 1. A wait outside a coroutine raises the host error instead of freezing the editor.
-- 2. One generation: submit, wait, download, and a vim.api call in the coroutine (work runs
--    on the main loop, not in a fast callback).
-- 3. After the scheduler has been idle, VIDU_GENS generations spawned later are driven too,
--    while a 10 ms uv timer ticks; the longest gap between its ticks is reported.
-- Each result is a line "ok <what>" or "fail <what>" in VIDU_OUT; the editor quits at the end
-- (exit 1 on any failure).
-- luacheck: read globals vim
local root = assert(os.getenv("VIDU_ROOT"), "VIDU_ROOT")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/luajit/?.so;" .. package.cpath

local out = assert(io.open(assert(os.getenv("VIDU_OUT"), "VIDU_OUT"), "w"))
local failures = 0
local function report(ok, what)
  if not ok then failures = failures + 1 end
  out:write(ok and "ok " or "fail ", what, "\n")
  out:flush()
end
local function finish()
  out:close()
  vim.cmd(failures == 0 and "qall!" or "cquit")
end

local uv = vim.uv or vim.loop
local vidu = require("vidu")
local GENS = tonumber(os.getenv("VIDU_GENS")) or 200
local image = root .. "/spec/fixtures/png_33x17.png"
local video = root .. "/build/hosts/nvim-out.mp4"

-- A watchdog: a hang must end as a failure.
local dog = uv.new_timer()
dog:start(150000, 0, vim.schedule_wrap(function()
  report(false, "nvim: the test did not finish within 150 s")
  finish()
end))

-- Runs fn as a vidu coroutine; an error in it is a failure that ends the test.
local function spawn_guarded(fn)
  vidu.spawn(function()
    local ok, err = xpcall(fn, debug.traceback)
    if not ok then
      report(false, "nvim: " .. tostring(err))
      finish()
    end
  end)
end

local ok_main, err_main = xpcall(function()
  require("vidu.hosts.luv").attach()
  local client = vidu.client("vidu", { api_key = "nvim-key", base_url = assert(os.getenv("VIDU_EMU_URL")) })

  local ok, err = pcall(vidu.sleep, 0.01)
  report(not ok and tostring(err):find("would block Neovim's loop", 1, true) ~= nil,
    "nvim: a wait outside a coroutine raises: " .. tostring(err))

  local function batch(idle_gap)
    local ticks, last, max_gap, done, failed = 0, uv.hrtime(), 0, 0, 0
    local t0 = uv.hrtime()
    local tick = uv.new_timer()
    tick:start(10, 10, function()
      local now = uv.hrtime()
      local gap = (now - last) / 1e6
      if gap > max_gap then max_gap = gap end
      last, ticks = now, ticks + 1
    end)
    for i = 1, GENS do
      spawn_guarded(function()
        local task, serr = client:submit{ image = image, prompt = "neovim batch " .. i }
        local wok, werr
        if task then wok, werr = task:wait{ timeout = 120 } end
        if wok then done = done + 1 else
          failed = failed + 1
          report(false, "nvim: generation " .. i .. ": " .. tostring(serr or werr))
        end
        if done + failed == GENS then
          tick:stop()
          tick:close()
          report(done == GENS, ("nvim: %d generations done (%d failed) in %.1f s while a 10 ms uv timer " ..
            "ticked %d times; longest tick gap %.1f ms (%.1f ms in the same time with nothing to do); " ..
            "%d scheduler steps in all, the longest %.1f ms")
            :format(done, failed, (uv.hrtime() - t0) / 1e9, ticks, max_gap, idle_gap,
            vidu.scheduler():stats().steps,
            vidu.scheduler():stats().slowest_step * 1000))
          finish()
        end
      end)
    end
  end

  spawn_guarded(function()
    local task = assert(client:submit{ image = root .. "/spec/fixtures/astronaut.png",
      prompt = "The astronaut waved and the camera moved up." })
    local wok, werr = task:wait{ timeout = 120 }
    report(wok == true, "nvim: one generation succeeded: " .. tostring(werr or task.status))
    os.remove(video)
    local dok, derr = task:download(video)
    local f = io.open(video, "rb")
    local head = f and f:read(12) or ""
    if f then f:close() end
    report(dok == true and head:sub(5, 8) == "ftyp", "nvim: downloaded an MP4: " .. tostring(derr or video))
    report(not vim.in_fast_event() and vim.api.nvim_get_current_buf() ~= nil,
      "nvim: vidu coroutines run on the main loop (vim.api callable)")
    -- Let the scheduler go idle, then start the batch from a plain uv timer.
    local later = uv.new_timer()
    later:start(200, 0, vim.schedule_wrap(function()
      later:close()
      report(vidu.scheduler():stats().live == 0, "nvim: the scheduler was idle before the batch")
      -- The same timer with nothing to do first: what the machine's own noise is.
      local last, idle_gap, n = uv.hrtime(), 0, 0
      local idle = uv.new_timer()
      idle:start(10, 10, function()
        local now = uv.hrtime()
        idle_gap = math.max(idle_gap, (now - last) / 1e6)
        last, n = now, n + 1
        if n == 150 then
          idle:stop()
          idle:close()
          vim.schedule(function() batch(idle_gap) end)
        end
      end)
    end))
  end)
end, debug.traceback)

if not ok_main then
  report(false, "nvim: " .. tostring(err_main))
  finish()
end
