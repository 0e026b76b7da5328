--- vidu.hosts.luv: drives vidu from a luv loop: plain luv, or Neovim's (vim.uv, vim.loop).
--
--   require("vidu.hosts.luv").attach()       -- Neovim: vim.uv or vim.loop
--   require("vidu.hosts.luv").attach(uv)     -- any luv module
--   vidu.spawn(function() ... task:wait() ... end)
--
-- libcurl's sockets are watched with uv poll handles and its timer, with the scheduler's
-- sleeps, by one uv timer: nothing polls, and an idle scheduler holds no active handle. The
-- C core only records what libcurl wants (engine:watch); this module reads that after each
-- call and calls back scheduler:socket_ready(fd, events) or scheduler:step(). In Neovim that work
-- runs on the main loop through vim.schedule, never in a fast callback, so code inside
-- vidu.spawn may call vim.api.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local M = {}

-- luv reports "r", "w", "d" (disconnect) and "p" (priority) combined; libcurl wants r/w/e.
local function curl_events(err, events)
  if err then return "e" end
  local ev = (events or ""):gsub("[^rw]", "")
  if ev == "" then ev = "r" end -- a disconnect is found by reading
  return ev
end

--- Attaches the scheduler (opts.scheduler, default vidu's) to a luv loop: `uv` is the luv
-- module (default vim.uv or vim.loop in Neovim). opts.defer(fn) runs the scheduler's work
-- (default vim.schedule in Neovim, at once elsewhere); opts.budget: seconds of coroutine
-- resumes per turn of the loop (default 0.002). Returns the host; host:detach() stops.
function M.attach(uv, opts)
  opts = opts or {}
  local vim = rawget(_G, "vim")
  uv = uv or (vim and (vim.uv or vim.loop))
  if type(uv) ~= "table" or type(uv.new_timer) ~= "function" then
    error("vidu.hosts.luv.attach: no luv module (pass one: attach(require('luv')))", 2)
  end
  local sched = opts.scheduler or require("vidu").scheduler()
  local defer = opts.defer or (vim and vim.schedule) or function(fn) fn() end

  local host = {
    name = vim and "Neovim" or "the luv",
    polls = {},   -- fd -> uv poll handle
    want = {},    -- fd -> events libcurl wants watched
    seen = {},    -- fd -> events seen ready, not yet handed to the scheduler
  }
  local timer = uv.new_timer()
  local flush_queued = false

  local budget = opts.budget or 0.002

  local function refuse(fd, err)
    error("vidu.hosts.luv: cannot watch libcurl's socket " .. fd .. ": " .. tostring(err), 0)
  end

  -- Hands the sockets seen ready to the scheduler, then watches again those still wanted.
  -- A handle stays stopped from its readiness until here, so a level-triggered poll cannot
  -- queue the same readiness many times while vim.schedule waits for the main loop.
  local function flush()
    flush_queued = false
    local seen = host.seen
    host.seen = {}
    -- One budget of coroutine resumes for the whole turn, however many sockets were ready;
    -- what is left waits for the next turn (the scheduler asks for it with later(0)).
    local deadline = sched:time() + budget
    for fd, ev in pairs(seen) do
      if host.want[fd] then
        local left = deadline - sched:time()
        sched:socket_ready(fd, ev, left > 0 and left or 0)
      end
    end
    for fd in pairs(seen) do
      local p, w = host.polls[fd], host.want[fd]
      if p and w and not host.seen[fd] then assert(p:start(w, host.callbacks[fd])) end
    end
  end

  host.callbacks = {}
  local function callback_for(fd)
    return function(err, events)
      local p = host.polls[fd]
      if p then p:stop() end
      host.seen[fd] = curl_events(err, events)
      if not flush_queued then
        flush_queued = true
        defer(flush)
      end
    end
  end

  local function on_timer()
    defer(function() sched:step(budget) end)
  end

  --- The scheduler wants socket fd watched for events ("r", "w", "rw"), or no more (nil).
  function host:watch(fd, events)
    local p = self.polls[fd]
    if not events then
      -- libcurl closes the socket right after: the handle must go first.
      self.want[fd], self.polls[fd], self.callbacks[fd], self.seen[fd] = nil, nil, nil, nil
      if p then
        p:stop()
        p:close()
      end
      return
    end
    self.want[fd] = events
    if not p then
      local err
      p, err = uv.new_socket_poll(fd)
      if not p then refuse(fd, err) end
      self.polls[fd] = p
      self.callbacks[fd] = callback_for(fd)
    end
    if not self.seen[fd] then
      local ok, err = p:start(events, self.callbacks[fd])
      if not ok then refuse(fd, err) end
    end
  end

  --- The scheduler wants step() after `seconds` (nil: nothing pending).
  function host:later(seconds) -- luacheck: ignore 212/self
    timer:stop()
    if seconds then
      local ms = math.ceil(seconds * 1000)
      timer:start(ms > 0 and ms or 0, 0, on_timer)
    end
  end

  --- Stops driving: closes the timer and every poll handle; waits may block again.
  function host:detach()
    sched:detach()
    if not timer:is_closing() then timer:close() end
    for fd, p in pairs(self.polls) do
      self.polls[fd] = nil
      p:stop()
      p:close()
    end
    self.want, self.seen = {}, {}
  end

  sched:attach(host)
  return host
end

return M
