--- The task store and how tasks progress: created -> queued -> running -> outcome, after N
-- polls or T seconds (run-level config, a one-shot "next" override, or per task).
-- Two queue rules that fal's headers ask for, kept here because they are about the queue:
-- a task with `start_deadline` (monotonic seconds) that has not started running by then ends
-- in the stage "timeout"; a task with priority "low" stays queued while any other task of its
-- provider with normal priority is still queued (its polls do not count meanwhile).
-- luacheck: ignore 212/self
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local uv = require("luv")
local util = require("vidu.emulator.util")

local M = {}
M.__index = M

local TERMINAL = { succeeded = true, failed = true, moderated = true, canceled = true, timeout = true }
M.TERMINAL = TERMINAL
-- Outcome names -> the stage a task ends in. "nsfw" succeeds with its outputs, flagged: WaveSpeed
-- answers has_nsfw_contents [true]; the other providers have no such flag and answer a success.
local OUTCOMES = { success = "succeeded", succeeded = "succeeded", failed = "failed",
  moderated = "moderated", nsfw = "succeeded" }
M.OUTCOMES = OUTCOMES
local STATES = { created = true, queued = true, running = true, succeeded = true, failed = true,
  moderated = true, canceled = true, success = "succeeded", done = "succeeded" }

--- New store. app gives config (run-level), server (timers) and on_change(task, old, new).
function M.new(app)
  return setmetatable({ app = app, by_id = {}, count = 0, seq = 0, next_queue = {} }, M)
end

--- Forget every task (timers too).
function M:clear()
  for _, t in pairs(self.by_id) do self:stop_timers(t) end
  self.by_id, self.count, self.next_queue = {}, 0, {}
end

--- Stops the stage timers of `task`.
function M:stop_timers(task)
  if task.timers then
    for i = 1, #task.timers do
      local tm = task.timers[i]
      if not tm:is_closing() then tm:close() end
    end
    task.timers = nil
  end
end

--- Queue a one-shot override for the next submitted task.
function M:push_next(t)
  self.next_queue[#self.next_queue + 1] = t
end

-- Apply progress settings (progress, polls, seconds, outcome) from `src` onto the task.
local function apply(task, src)
  if not src then return end
  if src.progress == "polls" or src.progress == "time" then task.progress = src.progress end
  if tonumber(src.polls) then task.npolls = tonumber(src.polls) end
  if tonumber(src.seconds) then task.seconds = tonumber(src.seconds) end
  if src.outcome and OUTCOMES[src.outcome] then
    task.outcome = OUTCOMES[src.outcome]
    task.nsfw = src.outcome == "nsfw"
  end
end

--- Create a task for `provider` with `fields` (id, key, input, ...). `timed` makes it progress
-- with time even in "polls" mode (webhook or sync-mode tasks nobody polls).
function M:create(provider, fields, timed)
  local cfg = self.app.config
  self.seq = self.seq + 1
  local task = fields
  task.provider = provider
  task.seq = self.seq
  task.polls = 0
  task.started = util.mono()
  task.created_wall = util.now()
  task.stage = "created"
  task.progress, task.npolls, task.seconds = cfg.progress, cfg.polls, cfg.seconds
  task.outcome = OUTCOMES[cfg.outcome] or "succeeded"
  task.nsfw = cfg.outcome == "nsfw"
  task.timed = timed or false
  local nx = table.remove(self.next_queue, 1)
  if nx then
    apply(task, nx)
    if nx.state then task.forced = STATES[nx.state] == true and nx.state or STATES[nx.state] end
  end
  self.by_id[task.id] = task
  self.count = self.count + 1
  self:schedule(task)
  return task
end

--- The task with this id, or nil.
function M:get(id)
  return self.by_id[id]
end

--- The task `id` when `provider` made it for `key`: another key's task is not found.
function M:owned(id, provider, key)
  local task = self.by_id[id]
  if task and task.provider == provider and task.key == key then return task end
  return nil
end

-- A timer that observes `task` after `at` seconds (and calls then() after, if given).
local function arm(self, task, at, after)
  local tm = uv.new_timer()
  tm:start(math.floor(at * 1000) + 5, 0, function()
    if not tm:is_closing() then tm:close() end
    self:observe(task)
    if after then after() end
  end)
  task.timers[#task.timers + 1] = tm
end

--- Timers at the stage boundaries for tasks that progress with time, and at a start deadline.
function M:schedule(task)
  self:stop_timers(task)
  if TERMINAL[task.stage] then return end
  if not self.app.server then return end
  local by_time = task.progress == "time" or task.timed
  if not by_time and not task.start_deadline then return end
  task.timers = {}
  -- Timers count from the loop's cached time; bring it up to date first. A timer may still
  -- fire a hair before the task is due by the real clock: it then arms the next one.
  uv.update_time()
  if task.start_deadline and not task.running_at then
    arm(self, task, math.max(0, task.start_deadline - util.mono()))
  end
  if not by_time then return end
  local elapsed = util.mono() - task.started
  for _, frac in ipairs({ 0.3, 1 }) do
    local at = task.seconds * frac - elapsed
    if at >= 0 then
      arm(self, task, at, function()
        if not TERMINAL[task.stage] and frac == 1 then self:schedule(task) end
      end)
    end
  end
end

--- Fraction of the way to done (0..1).
function M:fraction(task)
  local fp, ft
  if task.npolls <= 0 then fp = 1 else fp = task.polls / task.npolls end
  if task.seconds <= 0 then ft = 1 else ft = (util.mono() - task.started) / task.seconds end
  local f
  if task.progress == "time" then f = ft
  elseif task.timed then f = math.max(fp, ft)
  else f = fp end
  if f > 1 then f = 1 end
  return f
end

--- Is `task` (priority "low") held in the queue behind a task of normal priority? -> the
-- number of such tasks (0: not held).
function M:ahead(task)
  if task.priority ~= "low" then return 0 end
  local n = 0
  for _, t in pairs(self.by_id) do
    if t ~= task and t.provider == task.provider and t.priority ~= "low" and not t.canceled
      and not t.forced and (t.stage == "created" or t.stage == "queued") then
      n = n + 1
    end
  end
  return n
end

--- The stage the task is in now.
function M:current(task)
  if task.canceled then return "canceled" end
  if task.forced then return task.forced end
  if TERMINAL[task.stage] then return task.stage end
  if task.start_deadline and not task.running_at and util.mono() >= task.start_deadline then
    return "timeout"
  end
  if self:ahead(task) > 0 then return "queued" end
  local f = self:fraction(task)
  if f >= 1 then return task.outcome end
  if task.progress == "polls" and not task.timed then
    if task.polls == 0 then return "created" end
    local queued_polls = math.floor((task.npolls - 1) / 2)
    return task.polls <= queued_polls and "queued" or "running"
  end
  if f < 0.3 then return (task.polls == 0 and f < 0.05) and "created" or "queued" end
  return "running"
end

--- Recompute the stage; report a change to the app (callbacks). Returns the stage.
function M:observe(task)
  local new = self:current(task)
  local old = task.stage
  if new ~= old then
    task.stage = new
    if new == "running" and not task.running_at then task.running_at = util.now() end
    if TERMINAL[new] then
      task.finished_at = util.now()
      self:stop_timers(task)
    end
    if self.app.on_change then self.app:on_change(task, old, new) end
    if (old == "created" or old == "queued") and task.priority ~= "low" then self:release(task) end
  end
  return new
end

--- A task of normal priority left the queue: low-priority tasks of its provider that move by
-- time (nobody polls them) are looked at again, as their own timers may be spent.
function M:release(task)
  for _, t in pairs(self.by_id) do
    if t.priority == "low" and t.provider == task.provider and not TERMINAL[t.stage]
      and (t.progress == "time" or t.timed) and self:ahead(t) == 0 then
      self:observe(t)
      self:schedule(t)
    end
  end
end

--- A client polled the task: count it and return the stage.
function M:poll(task)
  if not TERMINAL[task.stage] and self:ahead(task) == 0 then task.polls = task.polls + 1 end
  return self:observe(task)
end

--- Remaining polls before the task runs, plus the tasks of normal priority a low-priority
-- task waits behind (fal's queue_position).
function M:queue_position(task)
  local q = 0
  if task.progress == "polls" and not task.timed then
    q = math.floor((task.npolls - 1) / 2) - task.polls
    if q < 0 then q = 0 end
  end
  return q + self:ahead(task)
end

--- Cancel: true, or false when the task is already finished.
function M:cancel(task)
  if TERMINAL[task.stage] then return false end
  task.canceled = true
  self:observe(task)
  return true
end

--- Per-task control: outcome, polls, seconds, progress, state.
function M:control(task, body)
  apply(task, body)
  if body.state == "auto" then
    task.forced = nil
  elseif body.state ~= nil then
    local s = STATES[body.state]
    if not s then return nil, "unknown state " .. tostring(body.state) end
    if s ~= true then body.state = s end
    task.forced = body.state
    if body.state == "canceled" then task.canceled = true end
  end
  self:schedule(task)
  self:observe(task)
  return true
end

--- A summary of the task for the control API.
function M:describe(task)
  return {
    id = task.id, provider = task.provider, stage = task.stage, polls = task.polls,
    progress = task.progress, npolls = task.npolls, seconds = task.seconds,
    outcome = task.nsfw and "nsfw" or task.outcome,
    canceled = task.canceled or false, video_url = task.video_url, cover_url = task.cover_url,
    nsfw = task.nsfw or nil,
    -- what the submit's headers asked for (fal: X-Fal-Queue-Priority, X-Fal-Request-Timeout,
    -- X-Fal-Runner-Hint)
    priority = task.priority, start_timeout = task.start_timeout, runner_hint = task.runner_hint,
    callback_url = task.callback_url, input = task.input,
    -- wall clock, seconds: when it was made, when it is due to finish by time (time-based
    -- progression), and when the emulator marked it finished
    created_at = task.created_wall, finished_at = task.finished_at,
    due_at = task.progress == "time" and task.created_wall + task.seconds or nil,
  }
end

return M
