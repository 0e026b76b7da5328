--- Task: one generation, made by client:submit or client:task(id or handle).
--
-- Fields: id, provider, status ("queued" | "running" | "succeeded" | "failed" |
-- "canceled"), handle (what a re-attach needs, JSON-serialisable), raw (the provider's last
-- answer), video_url, cover_url, cost, error (an err table when failed or canceled),
-- queue_position, logs, progress, and whatever state the driver keeps (status_url, ...).
-- The client is task.client; the API key is never on the task.
--
-- Drivers read, tasks decide: a driver turns each provider answer into an observation
-- ({ status, video_url, cover_url, cost, queue_position, logs, progress, error = { kind,
-- code, message }, raw, extra }) and Task:apply is the one place a task's state changes.
-- Statuses only move forward (queued -> running -> succeeded | failed | canceled); a terminal
-- status is final, and a late or out-of-order answer never moves a task back.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local core = require("vidu.core")
local errors = require("vidu.errors")
local url = require("vidu.url")

local Task = {}
Task.__index = Task

-- The order statuses move in; the three terminal ones share the last rank.
local ORDER = { queued = 1, running = 2, succeeded = 3, failed = 3, canceled = 3 }
local TERMINAL = { succeeded = true, failed = true, canceled = true }

-- What an observation may carry; anything else is a driver bug.
local OBS = {
  status = true, video_url = true, cover_url = true, cost = true, queue_position = true,
  logs = true, progress = true, error = true, raw = true, extra = true,
}

-- Names task:wait accepts.
local WAIT_OPTS = { timeout = true, on_update = true, cancel_on_timeout = true, poll = true }
local POLL_FIELDS = { first = true, max = true, factor = true, interval = true }
-- Polls in a row that may fail with a retryable error (each after client:request's own
-- retries) before task:wait gives up.
local MAX_POLL_FAILURES = 3
-- What a wait with a timeout may run past it: the requests in flight at the deadline (the
-- last look included) are cut this long after it, so wait returns within timeout + 1 s.
local GRACE = 0.9
-- Status streams one wait opens for a task at most (the first, and reconnections after a
-- stream broke or a callback interrupted it); after that the task polls.
local MAX_FOLLOWS = 3

--- Makes a task from a driver's handle (submit's or attach's answer: id plus whatever the
-- provider needs to find the task again). The task starts "queued"; the caller applies the
-- first observation.
function Task.new(client, handle)
  if type(handle) ~= "table" or handle.id == nil then
    error("vidu: driver " .. tostring(client.provider) .. " returned a task without an id", 3)
  end
  local task = setmetatable({}, Task)
  local h = { provider = client.provider }
  for k, v in pairs(handle) do
    task[k] = v
    h[k] = v
  end
  h.id = tostring(handle.id)
  task.handle = h
  task.id = h.id
  task.provider = client.provider
  task.client = client
  task.status = "queued"
  -- A live task is found again by its id when its callback arrives (client:deliver).
  client._live[h.id] = task
  -- The client's monotonic clock when the task was submitted or attached: the poll schedule
  -- counts from here, so a wait that starts late does not wait the first delay again.
  task.started_at = client.scheduler:time()
  return task
end

function Task.__tostring(task)
  return string.format("vidu.task<%s %s: %s>", tostring(task.provider), tostring(task.id),
    tostring(task.status))
end

--- True when the task has finished (succeeded, failed or canceled).
function Task:done()
  return TERMINAL[self.status] == true
end

-- Echoed inputs longer than this (a data: URI of the image a submit answer sends back) are
-- not kept on the task: task.raw is for reading what the provider said, not a second copy
-- of the image per task. The submits have the engine cut them before they are strings
-- (vidu.providers.common.ECHO_MAX, this same limit).
Task.ECHO_MAX = 1024
local ECHO_MAX = Task.ECHO_MAX

-- Cleans a provider answer in place before it is kept as task.raw: any string holding the
-- key is redacted (a provider may echo what it was sent), long data: URIs are dropped.
local function scrub(v, key, depth)
  if depth > 32 then return v end
  for k, x in pairs(v) do
    if type(x) == "string" then
      if #x > ECHO_MAX and x:sub(1, 5) == "data:" then
        v[k] = string.format("data:... (%d bytes, not kept)", #x)
      elseif key and x:find(key, 1, true) then
        v[k] = (x:gsub(key:gsub("%p", "%%%0"), "***"))
      end
    elseif type(x) == "table" then
      scrub(x, key, depth + 1)
    end
  end
  return v
end

-- The logs part of a snapshot: their count (fal sends them all each time), or the value.
local function logs_mark(logs)
  return type(logs) == "table" and #logs or logs
end

-- What on_update cares about, to tell whether an observation changed anything: written
-- into `into` (a table kept for it: no table per poll), or a new table.
local function snapshot(task, into)
  local t = into or {}
  t[1], t[2], t[3], t[4] = task.status, task.queue_position, logs_mark(task.logs), task.progress
  return t
end

-- True when the task differs from its snapshot `snap` in anything on_update cares about.
local function changed(snap, task)
  return snap[1] ~= task.status or snap[2] ~= task.queue_position or
    snap[3] ~= logs_mark(task.logs) or snap[4] ~= task.progress
end

-- The start of each terminal error's message, by kind.
local HEAD = {
  failed = "generation failed",
  moderated = "content moderation refused the task",
  canceled = "the task was canceled",
}

--- Builds the error value of a task that ended failed or canceled, from an observation's
-- error ({ kind, code, message, status, retryable }): the one place these values are made.
function Task:_terminal_error(e, status)
  e = type(e) == "table" and e or {}
  local kind = e.kind or "failed"
  if status == "canceled" then kind = "canceled" end
  if not HEAD[kind] and not errors.kinds[kind] then kind = "failed" end
  local detail = e.message ~= nil and tostring(e.message) or nil
  local message = HEAD[kind]
  if message and detail and detail ~= "" then
    message = message .. ": " .. detail
  elseif not message then
    message = detail or errors.kinds[kind]
  end
  local err = errors.new{
    kind = kind, provider = self.provider, task_id = self.id, code = e.code,
    status = e.status, retryable = e.retryable == true, message = message,
  }
  return errors.redact(err, self.client:_key())
end

--- Applies an observation (a driver's reading of a poll, submit or callback answer) to the
-- task: the one place its state changes. Returns true when something on_update cares about
-- changed (status, queue position, logs, progress). A terminal task and an observation
-- whose status is behind the task's are ignored.
function Task:apply(obs)
  return self:_apply(obs, true)
end

-- Task:apply; `signal` false for the readings of a stream the task's own wait follows: they
-- must not wake that wait (only an observation from elsewhere, a callback, should).
function Task:_apply(obs, signal)
  if type(obs) ~= "table" then error("task:apply expects an observation table", 3) end
  for k in pairs(obs) do
    if not OBS[k] then error("task:apply: unknown observation field " .. tostring(k), 3) end
  end
  local new = obs.status
  if new ~= nil and not ORDER[new] then
    error("task:apply: unknown status " .. tostring(new), 3)
  end
  if self:done() then return false end
  if new ~= nil and ORDER[new] < ORDER[self.status] then return false end

  -- What on_update cares about, before (kept in locals: apply runs at every poll).
  local status0, queue0, logs0, progress0 = self.status, self.queue_position,
    logs_mark(self.logs), self.progress
  if type(obs.raw) == "table" then
    local key = self.client:_key()
    self.raw = scrub(obs.raw, key and #key >= 4 and key or nil, 0)
  end
  if obs.video_url ~= nil then self.video_url = obs.video_url end
  if obs.cover_url ~= nil then self.cover_url = obs.cover_url end
  if obs.cost ~= nil then self.cost = obs.cost end
  -- Logs are what the provider's latest answer lists (fal sends them all each time).
  self.logs = obs.logs
  if obs.progress ~= nil and (self.progress == nil or obs.progress >= self.progress) then
    self.progress = obs.progress
  end
  if obs.extra then
    for k, v in pairs(obs.extra) do self[k] = v end
  end
  if new == "queued" then
    self.queue_position = obs.queue_position
  elseif new ~= nil then
    self.queue_position = nil
  end

  if new == "succeeded" and not self.video_url then
    -- Success without a video is not success: the provider's answer is unusable.
    new = "failed"
    obs = { error = { kind = "provider",
      message = "the provider reported success but gave no video URL" } }
  end
  if new == "failed" and self.cancel_requested then
    -- Some providers end a canceled task as an error (fal: COMPLETED with an error).
    new = "canceled"
  end
  if new == "failed" or new == "canceled" then
    self.error = self:_terminal_error(obs.error, new)
  end
  local client = self.client
  if new ~= nil and new ~= self.status and client._log then
    client._log("info", string.format("%s task %s: %s -> %s%s", self.provider, self.id,
      self.status, new, self.error and new ~= "succeeded" and (" (" .. tostring(self.error.kind)
        .. ")") or ""))
  end
  if new ~= nil then self.status = new end
  local did = status0 ~= self.status or queue0 ~= self.queue_position or
    logs0 ~= logs_mark(self.logs) or progress0 ~= self.progress
  if TERMINAL[self.status] then client:_release_slot(self) end
  if did then
    self.client:_emit(TERMINAL[self.status] and "finished" or "updated", self)
    -- A wait asleep on this task (an observation from a callback) looks now.
    local wake = signal and self._wake
    if wake then
      self._wake = nil
      client.scheduler:signal(wake)
    end
  end
  return did
end

-- A driver call's answer as the task gives it: true | nil, err, the error carrying the
-- task's id (so whoever reads it can re-attach).
function Task:_answer(ok, err)
  if ok then return true end
  if errors.is(err) and err.task_id == nil then err.task_id = self.id end
  return nil, err
end

--- Polls the provider once and applies what it says: true, changed | nil, err.
-- ctx: { deadline } on the scheduler's clock, which cuts the poll's requests.
function Task:refresh(ctx)
  local client = self.client
  local obs, err = client:_within(ctx and ctx.deadline, client.driver.poll, client, self)
  if not obs then return self:_answer(nil, err) end
  return true, self:apply(obs)
end

-- The outcome of a finished task, as task:wait returns it.
function Task:_outcome()
  if self.status == "succeeded" then return true end
  local e = self.error
  if not errors.is(e) then
    -- A status set from outside (a test, an old caller): build the error now.
    e = self:_terminal_error(e, self.status)
    self.error = e
  end
  if e.task_id == nil then e.task_id = self.id end
  return nil, e
end

--- Waits until the task finishes, polling with backoff: true | nil, err.
-- opts: timeout (s; default none), on_update = function(task) (called when status,
-- queue_position, logs or progress change), cancel_on_timeout (cancel where the provider
-- can, when the timeout passes), poll = { first, max, factor } (seconds before the first
-- poll, the longest gap, the growth per poll; default the client's, from the driver; an
-- optional `interval` is the gap after the first poll, for a `first` set near the expected
-- duration: then polls come at first, first + interval, then backing off by factor). Gaps
-- carry +-20% jitter. Once tasks of the same kind (model, duration, resolution) have finished,
-- the client's pace (vidu.pace) places the polls where finishes are likely instead, the
-- longest gap still `max` (but for a sleep to the likely range); the first task of a batch to
-- finish wakes the others to look.
-- err.kind: "failed", "moderated", "canceled", "timeout", or a poll error that retries did
-- not cure: at once when it is not retryable (401, 404), after 3 scheduled polls in a row
-- when it is (the task may still run: re-attach later with client:task(task.id)).
function Task:wait(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("task:wait expects a table of options", 2) end
  for k in pairs(opts) do
    if not WAIT_OPTS[k] then error("task:wait: unknown option " .. tostring(k), 2) end
  end
  if opts.on_update ~= nil and type(opts.on_update) ~= "function" then
    error("task:wait: on_update must be a function", 2)
  end
  local timeout = opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    error("task:wait: timeout must be a number of seconds >= 0", 2)
  end
  local client = self.client
  local first, max, factor = client.poll.first, client.poll.max, client.poll.factor
  local interval = client.poll.interval
  if opts.poll then
    for k, v in pairs(opts.poll) do
      if not POLL_FIELDS[k] then error("task:wait: unknown poll option " .. tostring(k), 2) end
      if type(v) ~= "number" or v <= 0 then
        error("task:wait: poll." .. k .. " must be a positive number", 2)
      end
    end
    first = opts.poll.first or first
    max = opts.poll.max or max
    factor = opts.poll.factor or factor
    interval = opts.poll.interval or interval
  end
  if self:done() then return self:_outcome() end

  local sched = client.scheduler
  local pace = client.pace
  local deadline = timeout and sched:time() + timeout
  local ctx = deadline and { deadline = deadline + GRACE } or nil
  local on_update = opts.on_update
  local failures, overdue = 0, 0
  -- `gap` follows the schedule; the first poll counts from the submit, so a wait that
  -- starts late does not wait the first gap again.
  local gap = first
  local wake_at = self.started_at + pace:jitter(first)
  local seen = snapshot(self)
  -- The pace's handle on this wait (vidu.pace): what it knows of this task's age.
  local ticket = pace:ticket(self.pace_key, self.started_at, self._ticket)
  self._ticket = ticket
  local follows = 0
  while true do
    local last, look_now = false, false
    -- Push instead of poll: where the driver offers a status stream and the client has a
    -- stream place free, follow the task on it. A stream refused, broken or ended early
    -- leaves the task to the polls below (a broken one may be followed again later).
    if client.streaming and not self._stream_off and follows < MAX_FOLLOWS
      and client:_stream_acquire() then
      follows = follows + 1
      local how = self:_follow(deadline, ctx, on_update)
      snapshot(self, seen)
      if self:done() then return self:_finished() end
      -- The stream saw the task still running until now: the pace plans from there.
      pace:polled(ticket, sched:time())
      -- At the deadline the wait looks one last time, as it does when polling.
      if how == "deadline" then last, look_now = true, true end
    end
    -- Sleep until wake_at, or as the pace plans once this kind of task has taught it: a
    -- task of the same kind finishing sooner than any before wakes this one to plan again.
    while not look_now do
      -- An observation delivered while asleep (a callback) may have changed or ended the task.
      if on_update and changed(seen, self) then
        snapshot(self, seen)
        on_update(self)
      end
      if self:done() then return self:_finished() end
      local now = sched:time()
      local at = now + pace:delay(ticket, now, wake_at - now, factor, overdue, max)
      if deadline and at >= deadline then
        -- Sleep to the deadline and look one last time before calling it a timeout.
        at, last = deadline, true
      end
      if not self._wake then self._wake = sched:event() end
      if at <= now or sched:sleep(at - now, pace:event(ticket), self._wake) == "timer" then break end
    end
    local ok, res = self:refresh(ctx)
    if ok and not self:done() then pace:polled(ticket, sched:time()) end
    if deadline and sched:time() >= deadline then last = true end
    if ok then
      failures = 0
    else
      -- client:request has already retried this poll. A provider hiccup that outlasts those
      -- retries should not end a wait of many minutes: a retryable error is given a few
      -- more scheduled polls before it ends the wait.
      failures = failures + 1
      local retryable = errors.is(res) and res.retryable
      if last and retryable then return self:_timed_out(opts, ctx, res) end
      if not retryable or failures >= MAX_POLL_FAILURES then return nil, res end
    end
    if ok and res and on_update then on_update(self) end
    snapshot(self, seen)
    if self:done() then return self:_finished() end
    if last then return self:_timed_out(opts, ctx) end
    if pace:overdue(ticket, sched:time()) then overdue = overdue + 1 end
    if interval then
      -- After a first poll placed near the expected duration, look often, then back off.
      gap, interval = interval, nil
    else
      gap = gap * factor
    end
    if gap > max then gap = max end
    wake_at = sched:time() + pace:jitter(gap)
  end
end

-- Follows the task on the driver's status stream (driver.follow) until it ends, the wait's
-- deadline or a callback's observation (the task's wake event); every reading goes through
-- Task:apply. Holds one of the client's stream places, taken by the caller. Returns how the
-- stream ended (see the fal driver's follow).
function Task:_follow(deadline, ctx, on_update)
  local client = self.client
  if not self._wake then self._wake = client.scheduler:event() end
  local wake = self._wake
  local function on_obs(obs)
    -- The stream's own readings must not interrupt the stream: only a callback's may.
    if self:_apply(obs, false) and on_update then on_update(self) end
  end
  -- The place goes back whatever happens, an on_update that raises included; the pcall is
  -- inside _within, so the wait's deadline is also lifted off the coroutine then.
  local ok, how, err
  client:_within(ctx and ctx.deadline, function()
    ok, how, err = client.scheduler:pcall(client.driver.follow, client, self, on_obs, deadline,
      { wake })
  end)
  client:_stream_release()
  if not ok then error(how, 0) end
  if how == "refused" then self._stream_off = true end
  if how == "broken" and client._log then
    client._log("info", string.format("%s task %s: status stream broken, polling (%s)",
      self.provider, self.id, tostring(err and err.message)))
  end
  return how
end

-- The end of a wait on a finished task: the pace learns from a success, the outcome.
function Task:_finished()
  local ticket = self._ticket
  if ticket then
    self._ticket = nil
    local learn = self.status == "succeeded" and self.pace_key ~= nil and not self._learned
      and not self._by_callback
    if learn then self._learned = true end
    local client = self.client
    client.pace:finish(ticket, client.scheduler:time(), learn)
  end
  return self:_outcome()
end

function Task:_timed_out(opts, ctx, cause)
  local err = errors.new{
    kind = "timeout", provider = self.provider, task_id = self.id, retryable = true,
    cause = cause,
    message = string.format("the task did not finish within %g s (status %s)",
      opts.timeout, tostring(self.status)),
  }
  if cause then err.message = err.message .. "; the last poll failed: " .. tostring(cause.message) end
  if opts.cancel_on_timeout then
    local ok, cerr = self:cancel(ctx)
    if ok then
      err.message = err.message .. "; it was canceled"
    else
      err.message = err.message .. "; cancel failed: " .. tostring(cerr and cerr.message) ..
        " (it may still run: re-attach with client:task(id))"
      err.cause = cerr
    end
  else
    err.message = err.message .. "; it is still running: wait again or re-attach with" ..
      " client:task(id)"
  end
  return nil, err
end

--- Asks the provider to cancel the task: true | nil, err (kind "unsupported" when the
-- provider has no cancel). A provider that confirms at once ends the task "canceled"; the
-- others say so on the next poll (a failure reported after a cancel counts as canceled).
-- ctx: { deadline } (task:wait's cancel_on_timeout passes its own).
function Task:cancel(ctx)
  local client = self.client
  local cancel = client.driver.cancel
  if not cancel then
    return nil, errors.new{
      kind = "unsupported", provider = self.provider, task_id = self.id,
      message = tostring(self.provider) .. " offers no way to cancel a task",
    }
  end
  local ok, err = client:_within(ctx and ctx.deadline, cancel, client, self)
  if not ok then return self:_answer(nil, err) end
  self.cancel_requested = true
  if type(ok) == "table" then self:apply(ok) end
  return true
end

local counter = 0

-- A name for the temporary file beside `path` that no other download in this process or
-- another is using.
local function temp_name(path)
  counter = counter + 1
  local salt = tostring({}):match("0x(%x+)") or tostring(counter)
  return string.format("%s.part-%x%x-%s-%d", path, os.time(), math.random(0, 0xffffff), salt,
    counter)
end

-- What task:download accepts.
local DOWNLOAD_OPTS = {
  on_progress = true, on_update = true, timeout = true, url = true, max_size = true,
  stall_timeout = true,
}
-- Videos are large: the default cap is generous (the cap for API answers stays small).
local DEFAULT_MAX_SIZE = 2 * 1024 * 1024 * 1024
-- A media host's answer that means the pre-signed link is no longer valid.
local GONE = { [401] = true, [403] = true, [404] = true, [410] = true }

-- Polls once for fresh media links (pre-signed links expire: Vidu's after 24 h, 1 h on older
-- pages). Not through apply: a finished task's status is final, only its links are renewed.
-- Returns the fresh value of `field`, or nil.
function Task:_fresh_link(field)
  local client = self.client
  local obs = client.driver.poll(client, self)
  if type(obs) ~= "table" or obs.status ~= "succeeded" or type(obs[field]) ~= "string" then
    return nil
  end
  self.video_url = obs.video_url or self.video_url
  self.cover_url = obs.cover_url or self.cover_url
  return obs[field]
end

--- Downloads the video to `path`: true | nil, err. It is streamed into a temporary file
-- beside the target (path .. ".part-<random>") and renamed into place only when complete,
-- so `path` never holds half a video; the temporary file is removed on failure.
-- opts: on_progress = function(bytes, total), on_update = function(task, bytes, total),
-- timeout (s, default the client's download_timeout), url (another http(s) URL of this
-- task, e.g. task.cover_url), max_size (bytes, default 2 GiB), stall_timeout (s without
-- progress, default the client's 60). A path that exists and is not a regular file (a
-- directory, FIFO or device) is refused before fetching. When the media host answers
-- 401/403/404/410 for the task's own link, the task is polled once for a fresh link and the
-- download tried again; failing that, err.kind is "expired".
function Task:download(path, opts)
  if type(path) ~= "string" or path == "" then
    error("task:download expects a file path", 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("task:download: options must be a table", 2) end
  for k in pairs(opts) do
    if not DOWNLOAD_OPTS[k] then error("task:download: unknown option " .. tostring(k), 2) end
  end
  local max_size = opts.max_size or DEFAULT_MAX_SIZE
  if type(max_size) ~= "number" or max_size < 1 or max_size % 1 ~= 0 then
    error("task:download: max_size must be a whole number of bytes >= 1", 2)
  end
  local st = opts.stall_timeout
  if st ~= nil and (type(st) ~= "number" or st ~= st or st < 0) then
    error("task:download: stall_timeout must be a number of seconds >= 0", 2)
  end
  -- A FIFO, a device or a directory at `path` would block or be destroyed by the rename.
  local regular, why = core.is_regular_or_absent(path)
  if not regular then
    return nil, errors.new{
      kind = "io", provider = self.provider, task_id = self.id, field = "path",
      message = "cannot download into " .. path .. ": " .. tostring(why),
    }
  end
  local target = opts.url or self.video_url
  if type(target) ~= "string" then
    return nil, errors.new{
      kind = "invalid", provider = self.provider, task_id = self.id, field = "video_url",
      message = "the task has no video URL yet (status " .. tostring(self.status) ..
        "): wait for it to succeed first",
    }
  end
  if not url.is_url(target) then
    return nil, errors.new{
      kind = "invalid", provider = self.provider, task_id = self.id, field = "video_url",
      limit = "http(s)", message = "only http(s) URLs are downloaded: " .. target:sub(1, 60),
    }
  end
  local on_progress
  if opts.on_progress or opts.on_update then
    local p, u = opts.on_progress, opts.on_update
    on_progress = function(bytes, total)
      if p then p(bytes, total) end
      if u then u(self, bytes, total) end
    end
  end
  -- The task's own link can be renewed by a poll; another URL cannot.
  local field = (target == self.video_url and "video_url")
    or (target == self.cover_url and "cover_url") or nil
  local refreshed = false
  while true do
    local tmp = temp_name(path)
    -- auth = false: video URLs are pre-signed links on a CDN; the key must not go there.
    local resp, err = self.client:request{
      method = "GET", url = target, output = tmp, auth = false, idempotent = true,
      timeout = opts.timeout, on_progress = on_progress, max_response = max_size,
      stall_timeout = st,
    }
    if resp then
      local ok, rerr = os.rename(tmp, path)
      if not ok then
        os.remove(tmp)
        return nil, errors.new{
          kind = "io", provider = self.provider, task_id = self.id,
          message = "could not move the download into place: " .. tostring(rerr),
        }
      end
      self.client:_emit("downloaded", self, { path = path, url = target })
      return true
    end
    os.remove(tmp)
    if errors.is(err) and err.task_id == nil then err.task_id = self.id end
    local gone = errors.is(err) and GONE[err.status]
    if not gone then return nil, err end
    local fresh = field and not refreshed and self:_fresh_link(field)
    refreshed = true
    if not fresh or fresh == target then
      -- The media host's refusal is about the link, not our key (none was sent there).
      err.kind = "expired"
      err.retryable = false
      err.message = string.format("the %s link answered HTTP %d: it expired or is gone%s; "
        .. "re-attach with client:task(handle) for fresh links", field or "media", err.status,
        field and (fresh and " (a fresh poll gave the same link)" or " (a fresh poll gave none)")
          or "")
      return nil, err
    end
    target = fresh
  end
end

return Task
