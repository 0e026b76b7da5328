--- vidu.hosts.ngx: vidu inside nginx with the Lua module (ngx_lua, OpenResty).
--
--   init_worker_by_lua_block { require("vidu.hosts.ngx").init() }
--   content_by_lua_block {
--     local job = vidu.spawn(function() ... task:wait() ... end)
--     local ok, result = require("vidu.hosts.ngx").wait(job)
--   }
--
-- ngx_lua binds coroutines to the request or timer that made them, and resuming one from
-- another kills the worker; a vidu scheduler outlives any one request. So init() starts one
-- timer per worker that owns the scheduler for the worker's whole life: every vidu coroutine
-- is made and resumed there, with ngx_lua's stock coroutine functions (see vidu.scheduler). A
-- handler spawns work and waits on an ngx.semaphore, which yields the handler and never the
-- worker; a wait outside a vidu coroutine raises instead of blocking the worker. The timer
-- loop sleeps as long as the scheduler allows (rounded up to the millisecond ngx counts in)
-- and is woken early by a spawn.
--
-- Code inside vidu.spawn runs in that timer: ngx.sleep, cosockets and coroutine.yield are
-- not for it (they belong to ngx_lua's own coroutines); vidu.sleep and vidu's requests are.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local M = {}

local unpack = table.unpack or unpack
local function pack(...) return { n = select("#", ...), ... } end

local state -- the worker's: { sched, wake, sleeping }

-- Seconds to whole milliseconds, up: ngx sleeps and semaphore waits truncate to ms, and a
-- 0.4 ms wait truncated to 0 would spin.
local function ms_up(seconds)
  return math.ceil(seconds * 1000) / 1000
end

--- Starts the worker's scheduler timer; call once from init_worker_by_lua. opts: scheduler
-- (default vidu's), interval (s between engine polls while requests run, default 0.01),
-- budget (s of coroutine resumes per step, default the scheduler's 0.002), idle (longest
-- sleep with nothing pending, default 1 s: the loop checks for a worker shutdown then).
function M.init(opts)
  opts = opts or {}
  local ngx = rawget(_G, "ngx")
  if not ngx or not ngx.timer then error("vidu.hosts.ngx.init: not inside nginx's Lua module", 2) end
  if state then error("vidu.hosts.ngx.init: already called in this worker", 2) end
  local semaphore = require("ngx.semaphore")
  local sched = opts.scheduler or require("vidu").scheduler()
  sched.host_interval = opts.interval or 0.01
  local idle = opts.idle or 1
  local st = { sched = sched, wake = semaphore.new(0), sleeping = false }
  state = st

  local host = {
    name = "nginx",
    hint = "in a handler, spawn the work and wait with require('vidu.hosts.ngx').wait(job)",
  }
  -- The loop plans its own sleeps from step()'s answer; this only wakes it early when work
  -- arrives from outside (a handler's spawn).
  function host.later(_, seconds)
    if seconds and st.sleeping and ngx.now() + seconds < st.sleep_until then
      st.sleeping = false
      st.wake:post(1)
    end
  end
  sched:attach(host)

  local function loop(premature)
    if premature then return end
    while not ngx.worker.exiting() do
      -- A failure here is a bug in vidu, not in the coroutines (their errors stay on their
      -- jobs); it is logged, and the loop goes on, since nothing else would drive the worker's
      -- vidu work.
      local ok, wait = pcall(sched.step, sched, opts.budget)
      if not ok then
        ngx.log(ngx.ERR, "vidu.hosts.ngx: step failed: ", tostring(wait))
        wait = 0.01
      end
      if wait == 0 then
        ngx.sleep(0) -- let nginx serve what waits, then go on
      else
        local s = wait and ms_up(wait) or idle
        if s < 0.001 then s = 0.001 end
        if s > idle then s = idle end
        ngx.update_time()
        st.sleep_until = ngx.now() + s
        st.sleeping = true
        st.wake:wait(s)
        st.sleeping = false
      end
    end
    st.stopped = true
  end
  local ok, err = ngx.timer.at(0, loop)
  if not ok then
    state = nil
    sched:detach()
    error("vidu.hosts.ngx.init: cannot start the scheduler timer: " .. tostring(err), 2)
  end
end

--- From a handler: waits for a job (from vidu.spawn) or a task without blocking the worker;
-- returns what job:wait() or task:wait(wait_opts) returns. Only the handler yields.
function M.wait(job_or_task, wait_opts)
  if not state then
    error("vidu.hosts.ngx.wait: call vidu.hosts.ngx.init() in init_worker_by_lua first", 2)
  end
  local sched = state.sched
  local x = job_or_task
  local is_job = getmetatable(x) == sched.Job
  if not is_job and (type(x) ~= "table" or type(x.wait) ~= "function") then
    error("vidu.hosts.ngx.wait expects a job or a task", 2)
  end
  local sema = require("ngx.semaphore").new(0)
  local result
  sched:spawn(function()
    if is_job then result = pack(x:wait()) else result = pack(x:wait(wait_opts)) end
    sema:post(1)
  end)
  while true do
    local ok, err = sema:wait(1)
    if ok then break end
    if err ~= "timeout" then return nil, err end
    if state.stopped then return nil, "vidu.hosts.ngx.wait: the worker is exiting" end
  end
  return unpack(result, 1, result.n)
end

return M
