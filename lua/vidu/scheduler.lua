--- A coroutine scheduler over one vidu.core engine.
--
-- Every wait (a transfer, a sleep, a job, a free connection slot) has two faces:
--   * inside one of our coroutines it parks the coroutine and yields to the loop;
--   * anywhere else (the main thread, a host's own coroutine) it blocks, driving the engine
--     and the other coroutines itself until the thing it waits for is there.
-- So `task:wait()` works the same in a plain script, inside `vidu.run`, and in a host that
-- calls `step()` from its own loop.
--
-- Invariants that keep this safe:
--   * a coroutine is only resumed from the ready queue, and only when coroutine.status says
--     "suspended"; nothing is ever resumed from inside a C callback (the engine has none);
--   * each park carries a fresh token (a number that only grows); a wake with a stale token
--     (a timer that lost the race against a transfer, say) is ignored, so a coroutine is woken
--     at most once per park;
--   * no pcall/xpcall surrounds a yield in this module, so the yields work on plain Lua 5.1
--     as well as on LuaJIT and 5.2+. (User code that wraps a wait in pcall uses
--     scheduler:pcall / vidu.pcall, which can yield on plain 5.1 too.)
--
-- Hosts with their own loop (luv, Neovim, nginx, a game's frames) either call step() now and
-- then, or attach() with a host object; the contract is described above Scheduler:attach.
-- Once attached, a wait outside the scheduler's coroutines raises instead of blocking.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local unpack = table.unpack or unpack

-- ngx_lua replaces coroutine.create/resume/yield/status with versions bound to the request or
-- timer that calls them (resuming one from another context kills the worker) and keeps the
-- stock ones as coroutine._create etc. The scheduler's coroutines outlive any one request, so
-- it always uses the stock functions. (running was never replaced.)
local co_create = rawget(coroutine, "_create") or coroutine.create
local co_resume = rawget(coroutine, "_resume") or coroutine.resume
local co_yield = rawget(coroutine, "_yield") or coroutine.yield
local co_status = rawget(coroutine, "_status") or coroutine.status
local co_running = coroutine.running

-- Can a yield cross pcall here? (LuaJIT and 5.2+: yes; plain 5.1: no.)
local PCALL_YIELDS
do
  local probe = co_create(function() return pcall(co_yield, "through") end)
  local _, v = co_resume(probe)
  PCALL_YIELDS = v == "through"
end

-- Whether coroutine.create takes a C function (plain Lua 5.1's takes Lua functions only).
local CREATE_TAKES_C = pcall(co_create, print)

-- While streams are open, the engine is driven at most once per this many ms when it blocks
-- (engine:wait's settle_ms): bytes of many streams are handled in one pass instead of one
-- pass, each polling every transfer's socket, per arriving event.
local STREAM_SETTLE_MS = 20

-- The budget of one step() for resuming coroutines, in seconds.
local DEFAULT_BUDGET = 0.002
-- Resumes stop this share of the budget before its end, so that the whole call fits it: the
-- engine's pass and the plan are inside the step's clock, but its entry, its return and the
-- host's own call around it are not (a host's clock around step() saw 5-20 us more).
local BUDGET_MARGIN = 0.05

-- New connections (transfers with fresh_connect: submits) one round of resumes may start; the
-- rest wait for the next round. The engine's pass after a round connects every transfer the
-- round started, and on loopback a new connection cost about 0.1 ms of that pass (socket,
-- connect, options, the epoll set): a round that started the 24-29 submits a frame's answers
-- had freed slots for made the next step 2-3.5 ms in the engine alone.
local OPEN_PER_ROUND = 8

local scheduler = {}

local Scheduler = {}
Scheduler.__index = Scheduler

local function pack(...) return { n = select("#", ...), ... } end

-- What our coroutines yield when they park, to tell a park from a plain coroutine.yield().
local PARK = setmetatable({}, { __tostring = function() return "vidu.scheduler.park" end })
-- Marks a transfer whose waiter is blocking (not a coroutine): the result is kept in `done`.
local BLOCKING = setmetatable({}, { __tostring = function() return "vidu.scheduler.blocking" end })

-- An event fires once; its waiters list holds the coroutines parked on it as pairs
-- (co, token), flat, and `stale` counts the entries of sleeps that ended another way (see
-- unwait); blocking loops poll `fired` instead. An event belongs to one scheduler.
local function new_event() return { fired = false, waiters = {} } end

-- A group is the coroutines of one run (or of the host, for spawns outside any run).
local function new_group()
  return { live = 0, idle = new_event(), unobserved = {} }
end

local core -- vidu.core, loaded on first use so pure-Lua modules load without the C part

local function load_core()
  if not core then core = require("vidu.core") end
  return core
end

--- Creates a scheduler. opts: engine (an existing vidu.core engine), engine_options (for
-- core.engine), max_wait (longest single block in the engine, s, default 1),
-- host_interval (what step() returns while transfers run, s, default 0.05), now (clock).
function scheduler.new(opts)
  opts = opts or {}
  local self = setmetatable({
    _engine = opts.engine,
    engine_options = opts.engine_options,
    max_wait = opts.max_wait or 1.0,
    host_interval = opts.host_interval or 0.05,
    now = opts.now,
    -- coroutine -> job, for every coroutine this scheduler runs
    owned = {},
    -- coroutine -> token of its current park; the last token given out
    parked = {}, ntok = 0,
    -- FIFO of coroutines to resume, flat: entry h is ready[5h-4 .. 5h] = co, n, v1, v2, v3
    -- (n values to resume it with; n = -1: v1 is a pack()ed table of them). No table per
    -- wake-up: a batch of a thousand tasks wakes thousands of times a second.
    ready = {}, rhead = 1, rtail = 0,
    -- seconds one resume takes, a moving average and its mean deviation: step() stops
    -- before a resume that would likely overrun its budget (see _run_ready)
    rcost = 0, rdev = 0, rtimed = false,
    -- binary heap of { at, seq, co, token } (co nil = a bare wake-up for a blocking wait)
    timers = {}, tseq = 0,
    -- transfer id -> { co, token } or BLOCKING
    waiters = {},
    -- transfer id -> finished item, for blocking waiters
    done = {},
    -- stream transfer id -> true when bytes arrived since its reader last looked
    arrived = {},
    nlive = 0,
    -- coroutine made by pcall on plain 5.1 -> the scheduler coroutine it runs inside
    proxies = setmetatable({}, { __mode = "k" }),
    -- the attached host (see attach), and what it was last told: seconds until step() or nil
    host = nil, planned = nil, stepping = false,
    -- calls of step() and socket_ready(), and the longest one (s), for stats()
    nsteps = 0, slowest_step = 0,
    -- new connections started in this round of resumes (see OPEN_PER_ROUND)
    opened = 0,
  }, Scheduler)
  -- Coroutines spawned outside any run belong to this group, which nobody waits for.
  self.root = new_group()
  return self
end

--- The engine, created on first use.
function Scheduler:engine()
  local e = self._engine
  if not e then
    local opts = self.engine_options or {}
    -- The client bounds connections per host itself (a queue in Lua, so per-request
    -- timeouts start when a request really goes out); the engine's bound is only a backstop.
    if opts.max_host_connections == nil then opts.max_host_connections = 256 end
    local made = {}
    for k, v in pairs(opts) do made[k] = v end
    made.max_host_connections = self:_backstop()
    self.applied = made.max_host_connections
    e = load_core().engine(made)
    self._engine = e
    if self.host and self.host.watch then self:_watch(e) end
  end
  return e
end

--- Makes room in the engine's per-host backstop for `n` connections of `owner` (a client: its
-- request slots plus its status streams, which hold a connection each for as long as their
-- task runs). Without it, streams could fill libcurl's bound and a submit would queue behind
-- them. The backstop becomes the larger of its own (256 unless engine_options say) and the
-- sum over the owners still alive (weak keys: a dropped client gives its room back; a bound
-- per host, summed over all hosts: room to spare, never too little).
function Scheduler:reserve_connections(owner, n)
  local r = self.reservations
  if not r then
    r = setmetatable({}, { __mode = "k" })
    self.reservations = r
  end
  r[owner] = n
  local e = self._engine
  if e then
    -- Raised past what it is believed to be; lowered again only from what was raised here
    -- (an engine passed in keeps its own bound unless more is needed).
    local want = self:_backstop()
    local own = self.engine_options and self.engine_options.max_host_connections or 256
    if want > (self.applied or own) or (self.applied and want < self.applied) then
      e:configure{ max_host_connections = want }
      self.applied = want
    end
  end
end

-- The engine's per-host bound: its own, or what the live reservations need if more.
function Scheduler:_backstop()
  local own = self.engine_options and self.engine_options.max_host_connections or 256
  local sum = 0
  for _, n in pairs(self.reservations or {}) do sum = sum + n end
  return sum > own and sum or own
end

-- Switches the engine to host-watched sockets (for good: a later detach leaves it watched,
-- and its own step()/wait() drive it then).
function Scheduler:_watch(e)
  e:watch()
  self.watched = true
end

-- Hands libcurl's socket wishes to a host that watches sockets; without one (detached) they
-- are dropped, so they do not pile up.
function Scheduler:_wishes()
  local e = self._engine
  if not (e and self.watched) then return end
  local wishes = e:sockets()
  local host = self.host
  if not (host and host.watch) then return end
  for i = 1, #wishes, 2 do
    local w = wishes[i + 1]
    host:watch(wishes[i], (w ~= "remove" and w ~= "none") and w or nil)
  end
end

--- Monotonic seconds.
function Scheduler:time()
  if self.now then return self.now() end
  return load_core().now()
end

---------------------------------------------------------------------------------------------
-- Internal structures: ready queue, timer heap, events, groups.

-- A token for one park: unique within the scheduler, and no table to collect.
local function new_token(self)
  local t = self.ntok + 1
  self.ntok = t
  return t
end

-- Queues `co` (a coroutine, or a job not started yet: its coroutine is made when first
-- resumed) to be resumed with n values v1, v2, v3 (n <= 3), or with the values of the
-- pack()ed table v1 when n is -1.
local function push_ready(self, co, n, v1, v2, v3)
  local t = self.rtail + 1
  self.rtail = t
  local q, k = self.ready, (t - 1) * 5
  q[k + 1], q[k + 2], q[k + 3], q[k + 4], q[k + 5] = co, n, v1, v2, v3
  -- Outside the host's call into us (a spawn from a key map, a signal from a handler): ask
  -- the host to call step() at once. Inside, the plan at the end of the call says it.
  local host = self.host
  if host and not self.stepping and self.planned ~= 0 then
    self.planned = 0
    host:later(0)
  end
end

-- The timer heap: entries { at, seq, co, token }, earliest `at` first, then the older `seq`.
-- The comparison is written out in place (no call per step): a timer is pushed and popped per
-- sleep, and with a thousand waiting tasks heap_less was about a tenth of the client's sampled
-- Lua instructions (not a measurable share of its CPU, which native work dominates).
local function heap_push(h, item)
  local i = #h + 1
  local at, seq = item[1], item[2]
  while i > 1 do
    local p = (i - i % 2) / 2
    local q = h[p]
    local qat = q[1]
    if at < qat or (at == qat and seq < q[2]) then
      h[i] = q
      i = p
    else
      break
    end
  end
  h[i] = item
end

local function heap_pop(h)
  local n = #h
  local top = h[1]
  local item = h[n]
  h[n] = nil
  n = n - 1
  if n == 0 then return top end
  local at, seq = item[1], item[2]
  local i = 1
  while true do
    local l = 2 * i
    if l > n then break end
    local c = h[l]
    local cat = c[1]
    if l < n then
      local r = h[l + 1]
      local rat = r[1]
      if rat < cat or (rat == cat and r[2] < c[2]) then c, cat, l = r, rat, l + 1 end
    end
    if cat < at or (cat == at and c[2] < seq) then
      h[i] = c
      i = l
    else
      break
    end
  end
  h[i] = item
  return top
end

function Scheduler:_add_timer(at, co, token)
  self.tseq = self.tseq + 1
  local t = { at, self.tseq, co, token }
  heap_push(self.timers, t)
  return t
end


-- Takes a sleeper's entry off an event's list once its sleep ended another way (its timer,
-- a transfer), so an event that seldom fires (a task's callback event, waited on at every
-- poll or stream read) does not collect one stale entry per sleep. The entry is not searched
-- for: a pace kind's event holds a sleeper for each of a thousand waiting tasks, and each
-- sleep ending by its timer would scan the list (13% of the client's sampled Lua instructions
-- at 1,000 fal generations). The event counts its stale entries instead and, once they are
-- half the list, keeps only the live ones: an entry is live while its coroutine is parked
-- with its token.
local function unwait(self, ev)
  local ws = ev.waiters
  if not ws then return end -- fired meanwhile: the list is gone
  local stale = (ev.stale or 0) + 1
  local n = #ws
  if stale * 4 < n then
    ev.stale = stale
    return
  end
  local parked, j = self.parked, 0
  for i = 1, n, 2 do
    local co, token = ws[i], ws[i + 1]
    if parked[co] == token then
      ws[j + 1], ws[j + 2] = co, token
      j = j + 2
    end
  end
  for i = n, j + 1, -1 do ws[i] = nil end
  ev.stale = 0
end

local function unwait_all(self, evs)
  for i = 1, #evs do unwait(self, evs[i]) end
end

-- Puts the parking coroutine on each event's list.
local function await(ev, co, token)
  local ws = ev.waiters
  local n = #ws
  ws[n + 1], ws[n + 2] = co, token
end

local function await_all(evs, co, token)
  for i = 1, #evs do await(evs[i], co, token) end
end

function Scheduler:_fire(ev)
  if ev.fired then return end
  ev.fired = true
  local ws = ev.waiters
  ev.waiters = nil
  for i = 1, #ws, 2 do self:_wake(ws[i], ws[i + 1]) end
end


---------------------------------------------------------------------------------------------
-- Parking and waking.

--- The running coroutine if it is one of ours, else nil (main thread or a foreign coroutine).
-- Inside pcall's helper coroutine on plain 5.1 it is the scheduler coroutine around it.
function Scheduler:current()
  local co, ismain = co_running()
  if co == nil or ismain then return nil end
  if self.owned[co] then return co end
  return self.proxies[co]
end

-- What a parked coroutine was resumed with: the token it parked with, then the wake values.
local function unparked(token, got, ...)
  if got ~= token then
    error("vidu: a scheduler coroutine was resumed by someone other than the scheduler", 3)
  end
  return ...
end

-- Suspends `co` (the running coroutine) until _wake(co, token, what, item); returns what, item.
function Scheduler:_park(co, token)
  self.parked[co] = token
  return unparked(token, co_yield(PARK))
end

-- Queues `co` to be resumed with (what, item) if it is still parked with this token.
-- Returns true when it was.
function Scheduler:_wake(co, token, what, item)
  if co == nil or self.parked[co] ~= token then return false end
  self.parked[co] = nil
  push_ready(self, co, 3, token, what, item)
  return true
end

function Scheduler:_finish(co, r)
  local job = self.owned[co]
  self.owned[co] = nil
  self.nlive = self.nlive - 1
  if r[1] then
    job.ok = true
    job.results = pack(unpack(r, 2, r.n))
  else
    job.ok = false
    job.err = r[2]
    -- The coroutine is dead but its stack is intact: this is where the error happened.
    if type(r[2]) == "string" then
      job.traceback = debug.traceback(co, r[2])
    else
      job.traceback = debug.traceback(co, tostring(r[2]))
    end
    if not job.observed then
      local u = job.group.unobserved
      u[#u + 1] = job
    end
  end
  job.co = nil
  if job.done then self:_fire(job.done) end
  local g = job.group
  g.live = g.live - 1
  if g.live == 0 then
    self:_fire(g.idle)
    g.idle = new_event()
  end
end

-- Makes the coroutine of a job on its first resume, so that it is created by the same
-- context that resumes it (in nginx: the scheduler's timer, never a request that ends).
function Scheduler:_start(job)
  local fn = job.fn
  job.fn = nil
  local co = co_create(function(...) return fn(...) end)
  job.co = co
  self.owned[co] = job
  return co
end

-- After a resume: the coroutine ended, parked, or yielded plainly.
local function resumed(self, co, ok, ...)
  if co_status(co) == "dead" then
    self:_finish(co, pack(ok, ...))
  elseif (...) ~= PARK then
    -- A plain coroutine.yield() from user code: it asked to let others run; resume it on
    -- the next round with no values.
    push_ready(self, co, 0)
  end
end

function Scheduler:_resume(co, n, v1, v2, v3)
  if getmetatable(co) == self.Job then co = self:_start(co) end
  -- Guard: only a coroutine suspended on us may be resumed ("normal" means it is itself
  -- resuming someone, "running" that we are inside it, "dead" that it is gone).
  local status = co_status(co)
  if status == "dead" and self.owned[co] then
    -- Someone else resumed it and it ended there; account for it so runs do not hang.
    return self:_finish(co, { false, "vidu: a scheduler coroutine was resumed by someone" ..
      " other than the scheduler and ended outside it", n = 2 })
  end
  if status ~= "suspended" then return end
  if n == 3 then return resumed(self, co, co_resume(co, v1, v2, v3)) end
  if n == 0 then return resumed(self, co, co_resume(co)) end
  if n == -1 then return resumed(self, co, co_resume(co, unpack(v1, 1, v1.n))) end
  if n == 1 then return resumed(self, co, co_resume(co, v1)) end
  return resumed(self, co, co_resume(co, v1, v2))
end

---------------------------------------------------------------------------------------------
-- The loop.

-- Resumes what is ready now. Coroutines made ready meanwhile wait for the next round, so a
-- coroutine that yields in a loop cannot starve the engine. With `deadline` (a time()), it
-- stops once that has passed, after at least one resume (none with `strict` if it has
-- passed already); the rest stay queued.
function Scheduler:_run_ready(deadline, strict)
  if strict and self:time() >= deadline then return end
  -- A round follows an engine pass (a nested round, its own): its new connections start afresh.
  self.opened = 0
  -- A resumed coroutine may block (a wait inside a foreign coroutine) and run a nested
  -- round that pops from this same queue: count, and stop early if it is empty.
  local count = self.rtail - self.rhead + 1
  self.depth = (self.depth or 0) + 1
  local q = self.ready
  local last = deadline and self:time()
  while count > 0 and self.rhead <= self.rtail do
    count = count - 1
    local h = self.rhead
    local k = (h - 1) * 5
    local co, n, v1, v2, v3 = q[k + 1], q[k + 2], q[k + 3], q[k + 4], q[k + 5]
    q[k + 1], q[k + 2], q[k + 3], q[k + 4], q[k + 5] = nil, nil, nil, nil, nil
    self.rhead = h + 1
    self:_resume(co, n, v1, v2, v3)
    if deadline and count > 0 then
      -- Stop before a resume that would likely overrun the deadline rather than after it.
      -- Resumes are not alike (a submit that builds its body costs ten times a wait that
      -- parks again), so the margin is the average cost plus twice its mean deviation, as
      -- TCP estimates a retransmission timeout: a step then ends inside its budget nearly
      -- always, not half the time.
      local now = self:time()
      local took = now - last
      local cost, dev = self.rcost, self.rdev
      if self.rtimed then
        local miss = took - cost
        cost = cost + miss / 8
        dev = dev + ((miss < 0 and -miss or miss) - dev) / 4
      else
        cost, dev, self.rtimed = took, took / 2, true -- the first resume timed
      end
      self.rcost, self.rdev, last = cost, dev, now
      if now + cost + 2 * dev >= deadline then break end
    end
  end
  self.depth = self.depth - 1
  if self.depth == 0 and self.rhead > self.rtail then
    -- Empty and not nested: restart the indices so they do not grow without bound.
    self.rhead, self.rtail = 1, 0
  end
end

function Scheduler:_fire_timers()
  local h = self.timers
  if not h[1] then return end
  local now = self:time()
  while h[1] and h[1][1] <= now do
    local t = heap_pop(h)
    t[5] = true -- popped: a stream's reader must not re-arm it (see Stream:read)
    if t[3] then self:_wake(t[3], t[4], "timer") end
  end
end

function Scheduler:_dispatch(finished)
  if not finished then return end
  for i = 1, #finished do
    local item = finished[i]
    local id = item.id
    local w = self.waiters[id]
    if item.ok == nil then
      -- An arrival notice of a stream transfer (see Scheduler:stream): its reader looks.
      -- Only the first notice carries the headers: an unread one is kept until read.
      local prev = self.arrived[id]
      if not prev or item.headers then self.arrived[id] = item end
      if w and w ~= BLOCKING and self:_wake(w[1], w[2], "data") then self.waiters[id] = nil end
    else
      self.waiters[id] = nil
      if w == BLOCKING then
        self.done[id] = item
      elseif w and not self:_wake(w[1], w[2], "done", item) then
        -- The waiter was already woken by its progress timer; it collects this on resuming.
        self.done[id] = item
      end
    end
  end
end

-- One round: wait at most `max_wait` seconds for the network (0 = do not block), dispatch
-- what finished, fire due timers, resume what is ready.
function Scheduler:_tick(max_wait)
  if self.rhead <= self.rtail then max_wait = 0 end
  local h = self.timers
  if max_wait > 0 and h[1] then
    local until_timer = h[1][1] - self:time()
    if until_timer < max_wait then max_wait = until_timer end
  end
  local engine = self._engine
  if max_wait > 0 then
    -- engine:wait sleeps the full time even with nothing in flight (all coroutines between
    -- polls), and wakes as soon as a transfer finishes.
    engine = engine or self:engine()
    self:_dispatch(engine:wait(math.ceil(max_wait * 1000),
      (self.nstreams or 0) > 0 and STREAM_SETTLE_MS or nil))
  elseif engine then
    self:_dispatch(engine:step())
  end
  self:_wishes()
  self:_fire_timers()
  self:_run_ready()
end


-- True when something can still happen: a coroutine to resume, a timer, a transfer.
function Scheduler:_busy()
  if self.rhead <= self.rtail or self.timers[1] then return true end
  local e = self._engine
  return e ~= nil and e:pending() > 0
end

-- Raises when the scheduler is attached to a host: blocking would freeze the host's loop.
function Scheduler:_may_block(what)
  local host = self.host
  if host then
    error("vidu: waiting for " .. (what or "something") .. " outside a vidu coroutine would block " ..
      (host.name or "the host") .. "'s loop; wait inside vidu.spawn(function() ... end)" ..
      (host.hint and ("; " .. host.hint) or ""), 0)
  end
end

-- Blocks the caller (not one of our coroutines) until done() is true, driving everything.
function Scheduler:_block(done, what)
  self:_may_block(what)
  while not done() do
    if not self:_busy() then
      error("vidu: deadlock: waiting for " .. (what or "something") ..
        " but no coroutine, timer or transfer can make progress", 3)
    end
    self:_tick(self.max_wait)
  end
end

-- Seconds until the scheduler wants step() again (0 = at once), or nil when nothing is
-- pending. An engine nobody watches is polled at least every `host_interval` seconds while
-- transfers are in flight; a watched one says itself when (its sockets tell the rest).
function Scheduler:_next_wake()
  if self.rhead <= self.rtail then return 0 end
  local wait
  if self.timers[1] then
    wait = self.timers[1][1] - self:time()
    if wait < 0 then wait = 0 end
  end
  local e = self._engine
  if e and self.host and self.host.watch then
    local ms = e:timeout()
    if ms >= 0 and (not wait or ms / 1000 < wait) then wait = ms / 1000 end
  elseif e and e:pending() > 0 then
    local ms = e:timeout()
    local s = (ms >= 0 and ms / 1000 < self.host_interval) and ms / 1000 or self.host_interval
    if not wait or s < wait then wait = s end
  end
  return wait
end

-- Tells the attached host what the scheduler needs now: libcurl's socket wishes (a host that
-- watches sockets) and when to call step(). Returns the seconds as step() does.
function Scheduler:_plan()
  local host = self.host
  self:_wishes()
  local wait = self:_next_wake()
  if host then
    self.planned = wait
    host:later(wait)
  end
  return wait
end

-- What step() and socket_ready() share after the engine has spoken: due timers, then resumes within
-- the budget, then the plan.
function Scheduler:_advance(finished, budget, t0, strict)
  self.nsteps = self.nsteps + 1
  self:_dispatch(finished)
  self:_fire_timers()
  if budget == nil then budget = DEFAULT_BUDGET end
  self:_run_ready(t0 + budget * (1 - BUDGET_MARGIN), strict)
  self.stepping = false
  local wait = self:_plan()
  local took = self:time() - t0
  if took > self.slowest_step then self.slowest_step = took end
  return wait
end

--- For a host's own loop: advances transfers, fires timers and resumes ready coroutines for
-- about `budget` seconds (default 0.002; at least one resume), never blocking. Returns the
-- seconds after which it wants calling again (0 = more is ready now), or nil when nothing is
-- pending at all. While transfers are in flight and no host watches the engine's sockets it
-- asks for at most `host_interval` seconds.
function Scheduler:step(budget)
  if budget ~= nil and (type(budget) ~= "number" or budget ~= budget or budget < 0) then
    error("vidu.step: budget must be a number of seconds >= 0", 2)
  end
  local t0 = self:time()
  self.stepping = true
  local e = self._engine
  -- A host that watches libcurl's sockets reports them through socket_ready: step() then
  -- serves only libcurl's timer. Without one, it looks at the sockets itself.
  local host = self.host
  return self:_advance(e and e:step(not (host and host.watch)), budget, t0)
end

--- For a host that watches sockets: libcurl's socket `fd` is ready for `events` ("r", "w",
-- "rw"; "e" for an error). Advances that socket's transfers, then resumes what they woke for
-- at most `budget` seconds (default 0.002; 0: none, for a host handing over many sockets in
-- one turn with one budget between them). Returns what step() returns.
function Scheduler:socket_ready(fd, events, budget)
  local e = self._engine
  if not e then return self:_plan() end
  local t0 = self:time()
  self.stepping = true
  return self:_advance(e:socket_action(fd, events), budget, t0, true)
end

--- Attaches a host loop. `host` is a table with
--   host:later(seconds)      call scheduler:step() after `seconds` (0: at once); replaces the
--                            previous wish; nil: nothing is pending, no call needed;
--   host:watch(fd, events)   optional: watch socket fd for "r", "w" or "rw" and call
--                            scheduler:socket_ready(fd, events_seen) when it is ready; nil: stop
--                            watching it (it may be closed right after). Without watch, the
--                            engine's sockets are polled by step() every host_interval s;
--   host.name, host.hint     optional: named in the error a blocking wait raises.
-- From then on a wait outside the scheduler's coroutines raises instead of blocking the host;
-- vidu.spawn is how work starts. The host is told at once what is pending.
function Scheduler:attach(host)
  if type(host) ~= "table" or type(host.later) ~= "function" then
    error("scheduler:attach expects a host with a later(seconds) method", 2)
  end
  if self.host then error("scheduler:attach: already attached to " .. (self.host.name or "a host"), 2) end
  self.host = host
  self.planned = nil
  if host.watch and self._engine then self:_watch(self._engine) end
  self:_plan()
end

--- Detaches the host: waits may block again, and step() drives the engine itself. The host
-- closes its own handles.
function Scheduler:detach()
  self.host = nil
  self.planned = nil
end

--- Whether a host is attached (waits outside coroutines raise instead of blocking).
function Scheduler:attached()
  return self.host ~= nil
end

--- pcall that a wait inside it may yield through, also on plain Lua 5.1 (where the stock
-- pcall cannot): true, results... | false, error, as pcall.
function Scheduler:pcall(fn, ...)
  if PCALL_YIELDS then return pcall(fn, ...) end
  return self:pcall_apart(fn, ...)
end

--- pcall(fn, ...) with fn in a coroutine of its own inside a scheduler coroutine (pcall
-- outside one): what pcall does on plain Lua 5.1, on every Lua. The caller's stack does not
-- grow with fn's. That matters for a call that goes deep and then leaves its caller waiting a
-- long time (a submit, then a wait of minutes): Lua shrinks a coroutine's stack only when it
-- is three times what its frames use, so the submit's depth would stay in every waiting
-- coroutine of a batch.
function Scheduler:pcall_apart(fn, ...)
  local outer = self:current()
  if not outer then return pcall(fn, ...) end
  -- fn runs in a coroutine of its own; its yields are passed out to the scheduler (which
  -- sees `outer` park) and the answers passed back in, and current() maps it to `outer`.
  local co = co_create(CREATE_TAKES_C and fn or function(...) return fn(...) end)
  self.proxies[co] = outer
  local r = pack(co_resume(co, ...))
  while co_status(co) ~= "dead" do
    r = pack(co_resume(co, co_yield(unpack(r, 2, r.n))))
  end
  self.proxies[co] = nil
  return unpack(r, 1, r.n)
end

---------------------------------------------------------------------------------------------
-- Jobs: spawn, run, wait.

local Job = {}
Job.__index = Job
Job.__tostring = function(job)
  local state = job.ok == nil and "running" or (job.ok and "done" or "failed")
  return "vidu.job<" .. state .. ">"
end

Scheduler.Job = Job

function Scheduler:_spawn(fn, group, args)
  if type(fn) ~= "function" then
    error("vidu.spawn expects a function, got " .. type(fn), 3)
  end
  -- The coroutine is made when the job is first resumed (see _start).
  local job = setmetatable({ fn = fn, group = group, scheduler = self }, Job)
  self.nlive = self.nlive + 1
  group.live = group.live + 1
  push_ready(self, job, -1, args)
  return job
end

--- Starts fn(...) in a new coroutine and returns its job at once. Spawned from inside a
-- run, it belongs to that run (run returns only when it has finished too). An error in it
-- that nobody collects (job:wait or gather) is raised by the run at its end.
function Scheduler:spawn(fn, ...)
  local co = self:current()
  local group = co and self.owned[co].group or self.root
  return self:_spawn(fn, group, pack(...))
end

-- Waits (yields or blocks) until the event fires.
function Scheduler:_wait_event(ev, what)
  if ev.fired then return end
  local co = self:current()
  if co then
    local token = new_token(self)
    await(ev, co, token)
    self:_park(co, token)
  else
    self:_block(function() return ev.fired end, what)
  end
end

--- Waits for the job: true, results... | false, error (the error value the function raised).
function Job:wait()
  self.observed = true
  if self.ok == nil then
    -- The event is made by the first wait: most jobs (a coroutine per generation) are
    -- never waited for one by one.
    local done = self.done
    if not done then
      done = new_event()
      self.done = done
    end
    self.scheduler:_wait_event(done, "a job")
  end
  if self.ok then return true, unpack(self.results, 1, self.results.n) end
  return false, self.err
end

--- Runs fn(...) in a coroutine and drives everything until it and every coroutine it
-- spawned have finished; returns fn's results. An error in fn is raised again here, with
-- the coroutine's traceback appended when it is a string. Called from inside a coroutine of
-- this scheduler it yields instead of blocking.
function Scheduler:run(fn, ...)
  if not self:current() then self:_may_block("vidu.run") end
  local group = new_group()
  local job = self:_spawn(fn, group, pack(...))
  job.observed = true
  while group.live > 0 do
    self:_wait_event(group.idle, "vidu.run's coroutines")
  end
  if not job.ok then
    if type(job.err) == "string" then error(job.traceback, 0) end
    error(job.err, 0)
  end
  for _, u in ipairs(group.unobserved) do
    if not u.observed then
      if type(u.err) == "string" then error(u.traceback, 0) end
      error(u.err, 0)
    end
  end
  return unpack(job.results, 1, job.results.n)
end

-- sleep's `ev`, `ev2`: nil, one event, or a list of events (a list has neither `fired` nor
-- `waiters`); the helpers below handle each of the three.
local function is_event(ev) return ev.fired ~= nil or ev.waiters ~= nil end

local function any_fired(ev)
  if ev == nil then return false end
  if is_event(ev) then return ev.fired end
  for i = 1, #ev do if ev[i].fired then return true end end
  return false
end

local function await_any(ev, co, token)
  if ev == nil then return end
  if is_event(ev) then return await(ev, co, token) end
  await_all(ev, co, token)
end

local function unwait_any(self, ev)
  if ev == nil then return end
  if is_event(ev) then return unwait(self, ev) end
  unwait_all(self, ev)
end

--- Sleeps `seconds`: yields inside a coroutine of ours, blocks (driving the rest) outside.
-- With `ev` (from scheduler:event(), or a list of such events), the sleep ends early when
-- one fires; `ev2` is another such (two sources without a list to build per sleep).
-- Returns "timer" when the time passed, "event" when an event ended it.
function Scheduler:sleep(seconds, ev, ev2)
  if type(seconds) ~= "number" or seconds ~= seconds then
    error("vidu.sleep expects a number of seconds", 2)
  end
  local at = self:time() + (seconds > 0 and seconds or 0)
  if any_fired(ev) or any_fired(ev2) then return "event" end
  local co = self:current()
  if co then
    local token = new_token(self)
    self:_add_timer(at, co, token)
    await_any(ev, co, token)
    await_any(ev2, co, token)
    -- A timer wakes with "timer"; an event's _fire passes nothing. The other sources'
    -- wake-ups find the token gone and are dropped.
    local why = self:_park(co, token)
    unwait_any(self, ev)
    unwait_any(self, ev2)
    return why == "timer" and "timer" or "event"
  end
  self:_may_block("a sleep")
  -- A bare timer bounds how long the engine blocks, so we wake up on time.
  self:_add_timer(at, nil, nil)
  local function fired() return any_fired(ev) or any_fired(ev2) end
  self:_block(function() return self:time() >= at or fired() end, "a sleep")
  return (fired() and self:time() < at) and "event" or "timer"
end

--- A one-shot event for sleep(seconds, event): scheduler:signal(event) wakes its sleepers.
function Scheduler:event() -- luacheck: ignore 212/self
  return new_event()
end

--- Fires an event made by scheduler:event(): every sleep waiting on it ends now.
function Scheduler:signal(ev)
  self:_fire(ev)
end

--- Starts an engine transfer (see vidu.core engine:request) and waits for it to finish;
-- returns the engine's finished item. opts.on_tick(id), if given, is called about every
-- opts.interval seconds (default 0.25) while the transfer runs (for progress reports).
-- A coroutine's transfer on a new connection (fresh_connect) past OPEN_PER_ROUND in this
-- round of resumes waits for the next round before it starts.
function Scheduler:transfer(spec, opts)
  local co = self:current()
  if not co then self:_may_block("a transfer") end
  if co and spec.fresh_connect then
    while self.opened >= OPEN_PER_ROUND do
      local token = new_token(self)
      push_ready(self, co, 1, token)
      self:_park(co, token)
      self.parked[co] = nil
    end
    self.opened = self.opened + 1
  end
  local engine = self:engine()
  local id = engine:request(spec)
  local on_tick = opts and opts.on_tick
  local interval = opts and opts.interval or 0.25
  if co then
    while true do
      local item = self.done[id]
      if item then
        self.done[id] = nil
        return item
      end
      local token = new_token(self)
      self.waiters[id] = { co, token }
      if on_tick then self:_add_timer(self:time() + interval, co, token) end
      local what
      what, item = self:_park(co, token)
      if what == "done" then return item end
      -- The timer won: the transfer is still running (its waiter entry is stale now and
      -- is replaced above on the next round).
      on_tick(id)
    end
  end
  self.waiters[id] = BLOCKING
  local next_tick = on_tick and self:time() + interval
  if next_tick then self:_add_timer(next_tick, nil, nil) end
  self:_block(function()
    if self.done[id] then return true end
    if next_tick and self:time() >= next_tick then
      on_tick(id)
      next_tick = self:time() + interval
      self:_add_timer(next_tick, nil, nil)
    end
    return false
  end, "a transfer")
  local item = self.done[id]
  self.done[id] = nil
  return item
end

---------------------------------------------------------------------------------------------
-- Streams: a transfer whose body is read while it arrives (vidu.core's stream = true).

local Stream = {}
Stream.__index = Stream

--- Starts an engine transfer with stream = true and returns a stream object at once:
-- stream:read(deadline, events) waits for what arrived, stream:close() ends it (always call
-- it: open streams make the loop settle, see STREAM_SETTLE_MS). The bytes stay in the
-- engine's C buffer until read; an arrival wakes the reader once per engine call.
function Scheduler:stream(spec)
  if not self:current() then self:_may_block("a stream") end
  local engine = self:engine()
  spec.stream = true
  -- Many long transfers: libcurl's perform would poll every one of their sockets each time
  -- the loop turns; its socket interface (engine:watch, then driven by engine:wait's own
  -- poll) serves only the ready ones. For good, as a host's watch is.
  if not self.watched then self:_watch(engine) end
  local id = engine:request(spec)
  self.nstreams = (self.nstreams or 0) + 1
  return setmetatable({ scheduler = self, engine = engine, id = id }, Stream)
end

--- Waits until bytes arrive, the transfer ends, `deadline` (the scheduler's clock) passes or
-- one of `events` (a list of scheduler events) fires. Returns
--   "data", bytes, stream    bytes that arrived (stream.status, stream.headers: the answer's)
--   "done", item, rest       the engine's finished item (rest: bytes not read before, or nil)
--   "timeout" | "event"
function Stream:read(deadline, events)
  local s, e, id = self.scheduler, self.engine, self.id
  if self.item then return "done", self.item end
  events = events or {}
  while true do
    local item = s.done[id]
    if item then
      s.done[id], s.arrived[id] = nil, nil
      self.item = item
      local rest = item.body
      item.body = nil
      return "done", item, rest ~= "" and rest or nil
    end
    local notice = s.arrived[id]
    if notice then
      s.arrived[id] = nil
      if notice.headers then self.status, self.headers = notice.status, notice.headers end
      local bytes = e:take(id)
      if bytes then return "data", bytes, self end
    end
    for i = 1, #events do if events[i].fired then return "event" end end
    if deadline and s:time() >= deadline then return "timeout" end
    local co = s:current()
    if co then
      local token = new_token(s)
      s.waiters[id] = { co, token }
      if deadline then
        -- One timer per deadline, re-armed for each park, instead of one per read: a stream
        -- is read once per event, thousands of times, and stale timers would pile up.
        local t = self.timer
        if t and t[1] == deadline and not t[5] then
          t[3], t[4] = co, token
        else
          self.timer = s:_add_timer(deadline, co, token)
        end
      end
      await_all(events, co, token)
      local what, got = s:_park(co, token)
      unwait_all(s, events)
      if s.waiters[id] and s.waiters[id][2] == token then s.waiters[id] = nil end
      if what == "done" then s.done[id] = got end
    else
      s:_may_block("a stream")
      s.waiters[id] = BLOCKING
      if deadline then s:_add_timer(deadline, nil, nil) end
      s:_block(function()
        if s.done[id] or s.arrived[id] then return true end
        for i = 1, #events do if events[i].fired then return true end end
        return deadline ~= nil and s:time() >= deadline
      end, "a stream")
      if s.waiters[id] == BLOCKING then s.waiters[id] = nil end
    end
  end
end

--- The bytes the stream has received so far, those a skip_repeats transfer dropped included
-- (nil once it finished): a reader tells a stream that only repeats itself from a silent one.
function Stream:received()
  if self.item then return nil end
  return (self.engine:progress(self.id))
end

--- Ends the stream: cancels the transfer if it still runs and forgets its leftovers. Safe to
-- call twice.
function Stream:close()
  if self.closed then return end
  self.closed = true
  local s, id = self.scheduler, self.id
  s.nstreams = s.nstreams - 1
  -- A canceled transfer's result comes with a later engine call; with no waiter left,
  -- _dispatch drops it.
  if not self.item then self.engine:cancel(id) end
  s.done[id], s.arrived[id] = nil, nil
  if s.waiters[id] then s.waiters[id] = nil end
end

---------------------------------------------------------------------------------------------
-- A counting semaphore with a FIFO of waiters (coroutines park, others block).

local Semaphore = {}
Semaphore.__index = Semaphore

--- A semaphore of `n` slots on this scheduler: sem:acquire() waits for a slot,
-- sem:release() gives it back (to the longest waiter first).
function Scheduler:semaphore(n)
  return setmetatable({ free = n, size = n, queue = {}, qhead = 1, qtail = 0, scheduler = self },
    Semaphore)
end

--- Takes a slot, waiting (parked, or blocking outside a coroutine) until one is free.
function Semaphore:acquire()
  if self.free > 0 and self.qhead > self.qtail then
    self.free = self.free - 1
    return
  end
  local s = self.scheduler
  local co = s:current()
  if not co then s:_may_block("a connection slot") end
  local entry = { co = co, token = co and new_token(s), granted = false }
  self.qtail = self.qtail + 1
  self.queue[self.qtail] = entry
  if co then
    s:_park(co, entry.token)
  else
    s:_block(function() return entry.granted end, "a connection slot")
  end
end

--- Gives a slot back: to the longest waiter first, else to the pool.
function Semaphore:release()
  while self.qhead <= self.qtail do
    local h = self.qhead
    local entry = self.queue[h]
    self.queue[h] = nil
    self.qhead = h + 1
    -- The slot passes straight to the waiter, so a newcomer cannot overtake it.
    entry.granted = true
    if entry.co == nil or self.scheduler:_wake(entry.co, entry.token) then return end
  end
  self.qhead, self.qtail = 1, 0
  self.free = self.free + 1
end

--- Number of waiters queued for a slot.
function Semaphore:waiting()
  return self.qtail - self.qhead + 1
end

---------------------------------------------------------------------------------------------
-- gather

--- Waits for many things at once. `list` holds tasks (anything with a :wait method, waited
-- with `wait_opts`), functions (run as coroutines) and jobs. Returns `results, nfailed`
-- where results[i] describes list[i]:
--   { ok = true, ... }  the values (task:wait's or the function's) in [1..n], n = count
--   { ok = false, err = e } the error: returned as `nil, e`, or raised (e = the error value)
-- A function that returns nil, err counts as failed, like a task whose wait failed.
function Scheduler:gather(list, wait_opts)
  if type(list) ~= "table" then error("vidu.gather expects a list", 2) end
  if not self:current() then self:_may_block("vidu.gather") end
  local jobs = {}
  for i = 1, #list do
    local item = list[i]
    if getmetatable(item) == Job then
      jobs[i] = item
    elseif type(item) == "function" then
      jobs[i] = self:spawn(item)
    elseif type(item) == "table" and type(item.wait) == "function" then
      jobs[i] = self:spawn(function() return item:wait(wait_opts) end)
    else
      error("vidu.gather: item " .. i .. " is not a task, a function or a job", 2)
    end
    jobs[i].observed = true
  end
  local results, nfailed = {}, 0
  for i = 1, #jobs do
    local r = pack(jobs[i]:wait())
    local res
    if not r[1] then
      res = { ok = false, err = r[2], n = 0 }
    elseif r.n >= 2 and r[2] == nil then
      res = { ok = false, err = r[3], n = r.n - 1 }
    else
      res = { ok = true, n = r.n - 1 }
    end
    if r[1] then for k = 2, r.n do res[k - 1] = r[k] end end
    if not res.ok then nfailed = nfailed + 1 end
    results[i] = res
  end
  return results, nfailed
end

--- Counts: live coroutines, queued ready ones, timers, transfers in flight, and the calls of
-- step() and socket_ready() so far (steps) with the longest of them (slowest_step, s).
function Scheduler:stats()
  local e = self._engine
  return {
    steps = self.nsteps,
    slowest_step = self.slowest_step,
    live = self.nlive,
    ready = self.rtail - self.rhead + 1,
    timers = #self.timers,
    transfers = e and e:pending() or 0,
  }
end

local default_instance

--- The module-level scheduler, created on first use.
function scheduler.default()
  if not default_instance then default_instance = scheduler.new() end
  return default_instance
end

scheduler.Job = Job
return scheduler
