--- The client object: one provider, one key, one base URL. It binds a driver (the wire
-- adapter) to the engine, the retry policy and the events: submit and re-attach make tasks,
-- and every step of a task's life goes out through one hook, `on_event`.
--
-- The API key lives in a weak table keyed by the client, not on the client itself, so
-- printing or dumping a client (or a task, which points at its client) cannot show it.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local http = require("vidu.http")
local retry = require("vidu.retry")
local scheduler = require("vidu.scheduler")
local registry = require("vidu.providers")
local url = require("vidu.url")
local validate = require("vidu.validate")
local errors = require("vidu.errors")
local Task = require("vidu.task")
local Pace = require("vidu.pace")

local client_mod = {}

local LOG_LEVELS = { info = 1, debug = 2 }

-- The client's log function: the `log` option, or stderr at the level VIDU_LOG names.
local function log_for(opt)
  if opt then return opt end
  local max = LOG_LEVELS[os.getenv("VIDU_LOG") or ""]
  if not max then return nil end
  return function(level, line)
    if (LOG_LEVELS[level] or 1) <= max then io.stderr:write("vidu: ", line, "\n") end
  end
end

local Client = {}
Client.__index = Client

-- client -> API key. Weak keys: a dropped client takes its key with it.
local secrets = setmetatable({}, { __mode = "k" })

-- Options the runtime understands; everything else belongs to the driver.
local RUNTIME = {
  api_key = "string", base_url = "string", timeout = "number", connect_timeout = "number",
  download_timeout = "number", poll = "table", retries = "number", retry = "table",
  max_connections = "number", scheduler = "table", on_event = "function",
  stall_timeout = "number", ca_file = "string", ca_path = "string", log = "function",
  limits = "table", stream = "boolean", max_streams = "number",
}

-- Open status streams per client, at most (a task beyond it polls, and takes a place that
-- another task's stream frees). Over HTTP/1.1 each open stream holds a connection of its own
-- for as long as its task runs: a descriptor, and about 35 KB of this process's memory
-- (bench/generations.lua: 200 streams, 23 MB peak against 15.6 MB polling). 256 of them cost
-- about 9 MB and leave three quarters of the common 1,024-descriptor limit to everything
-- else; the connections they hold are reserved in the engine's per-host bound beside the
-- request slots (Scheduler:reserve_connections), so a submit never queues behind streams.
-- Over HTTP/2 (fal's own hosts) streams share connections and cost less. A batch larger than
-- that polls for the rest, which the pace keeps cheap; raise it (with `ulimit -n`) to push
-- every task of a larger batch.
local DEFAULT_MAX_STREAMS = 256

-- What the limits option may hold: whole numbers >= 1 (per: seconds > 0).
local LIMITS = { concurrent = true, rate = true, per = true }

--- The runtime's options, name -> Lua type (the README's Clients table is checked against it).
client_mod.RUNTIME = RUNTIME

local POLL_FIELDS = { first = true, max = true, factor = true, interval = true }

-- The deadline of the call in progress in each coroutine (see Client:_within); the main
-- thread's under MAIN on Lua 5.1, where coroutine.running() gives nil there. A call the
-- scheduler runs apart (Scheduler:pcall_apart) counts as its caller's.
local MAIN = {}

local function deadline_key(client)
  return client.scheduler:current() or coroutine.running() or MAIN
end

-- What client:submit's second argument and client:task's options may hold.
local SUBMIT_OPTS = { on_event = true }

local function check_poll(poll, where)
  for k, v in pairs(poll) do
    if not POLL_FIELDS[k] then error(where .. ": unknown poll option " .. tostring(k), 3) end
    if type(v) ~= "number" or v <= 0 then
      error(where .. ": poll." .. k .. " must be a positive number", 3)
    end
  end
end

local function load_driver(name)
  if type(name) == "table" then return name end
  if type(name) ~= "string" then
    error("vidu.client expects a provider name, got " .. type(name), 3)
  end
  if not registry.get(name) then
    error(string.format("vidu.client: unknown provider %q (known: %s)", name,
      table.concat(registry.names, ", ")), 3)
  end
  return registry.driver(name)
end

-- Checks the options a driver declares (name -> Lua type, or "any") and hands them to its
-- init; raises on an unknown name or a wrong type.
local function driver_options(self, driver, extra, pname)
  if driver.options then
    for k, v in pairs(extra) do
      local t = driver.options[k]
      if not t then error("vidu.client(\"" .. pname .. "\"): unknown option " .. tostring(k), 3) end
      if t ~= "any" and type(v) ~= t then
        error("vidu.client: option " .. k .. " must be a " .. t .. ", got " .. type(v), 3)
      end
    end
  elseif not driver.init and next(extra) then
    error("vidu.client(\"" .. pname .. "\"): unknown option " .. tostring((next(extra))), 3)
  end
  if driver.init then driver.init(self, extra) end
end

--- Creates a client for provider `name` (or a driver table, for tests and extensions).
-- opts: api_key (default: the provider's environment variable), base_url (replaces every
-- host of the provider), timeout (per request, s, default 30), connect_timeout (default 10),
-- download_timeout (default 0 = none), poll = { first, max, factor [, interval] } (task:wait's
-- schedule; see Task:wait), retries (total attempts per request, default 5), retry (a
-- retry.policy table), max_connections (per host, default 32), scheduler, on_event =
-- function(event) (see Client:_emit), stall_timeout (a download without progress for this
-- long ends with a retryable error; default 60 s, 0 = none), ca_file / ca_path (a private or
-- corporate CA; else $CURL_CA_BUNDLE, $SSL_CERT_FILE, $SSL_CERT_DIR, else the system's);
-- log = function(level, line) (level "info": task state changes, submits, retries; "debug":
-- also one line per request; default: stderr when VIDU_LOG is info or debug, else none);
-- stream (default true: task:wait follows a task on the provider's status stream where the
-- driver offers one, fal's, instead of polling; false: always poll), max_streams (open
-- status streams at most, default 256, 0 = none; tasks beyond it poll);
-- other names go to the driver.
-- A missing key raises: it is a setup mistake. Against the emulator any non-empty key works.
function client_mod.new(name, opts)
  local driver = load_driver(name)
  opts = opts or {}
  if type(opts) ~= "table" then error("vidu.client: options must be a table", 2) end
  local extra = {}
  for k, v in pairs(opts) do
    local t = RUNTIME[k]
    if t then
      if type(v) ~= t then
        error("vidu.client: option " .. k .. " must be a " .. t .. ", got " .. type(v), 2)
      end
    else
      extra[k] = v
    end
  end
  local pname = driver.name or tostring(name)
  for _, k in ipairs({ "timeout", "connect_timeout", "download_timeout", "stall_timeout" }) do
    local v = opts[k]
    if v ~= nil and (v ~= v or v < 0 or v == math.huge) then
      error("vidu.client: option " .. k .. " must be a number of seconds >= 0", 2)
    end
  end

  local key = opts.api_key
  if key == nil and driver.env_key then key = os.getenv(driver.env_key) end
  if key == nil or key == "" then
    error(string.format("vidu.client(%q): no API key: pass api_key or set %s" ..
      " (against the emulator any non-empty key works)", pname,
      tostring(driver.env_key or "the provider's key variable")), 2)
  end
  -- It goes into a header: a space, CR, LF or NUL would break it (or smuggle another one).
  if key:find("[%s%c]") then
    error(string.format("vidu.client(%q): the API key contains a space or control character" ..
      " (a stray newline from a file?)", pname), 2)
  end

  local base_url = opts.base_url or driver.default_base_url
  if not base_url then
    error(string.format("vidu.client(%q): base_url is required for this provider", pname), 2)
  end
  if not url.is_url(base_url) then
    error("vidu.client: base_url must be an http(s) URL without spaces or control characters", 2)
  end
  if url.userinfo(base_url) then
    -- The provider's own Authorization header replaces it, and it would end up in logs.
    error("vidu.client: base_url must not carry credentials (user:password@); pass api_key", 2)
  end
  base_url = url.trim_slash(base_url)

  -- The driver's schedule (driver.poll is its poll function).
  local schedule = driver.poll_defaults or {}
  local poll = {
    first = schedule.first or 2, max = schedule.max or 15, factor = schedule.factor or 1.5,
    interval = schedule.interval,
  }
  if opts.poll then
    check_poll(opts.poll, "vidu.client")
    for k, v in pairs(opts.poll) do poll[k] = v end
  end

  local policy_opts = {}
  if opts.retry then for k, v in pairs(opts.retry) do policy_opts[k] = v end end
  if opts.retries then
    if opts.retries < 1 or opts.retries % 1 ~= 0 then
      error("vidu.client: retries must be a whole number >= 1", 2)
    end
    policy_opts.attempts = opts.retries
  end

  local limits = opts.limits
  if limits then
    for k, v in pairs(limits) do
      if not LIMITS[k] then error("vidu.client: unknown limits option " .. tostring(k), 2) end
      if type(v) ~= "number" or v ~= v or v <= 0 or (k ~= "per" and v % 1 ~= 0) then
        error("vidu.client: limits." .. k .. " must be a " ..
          (k == "per" and "number of seconds > 0" or "whole number >= 1"), 2)
      end
    end
  end

  local max_connections = opts.max_connections or 32
  if max_connections < 1 or max_connections % 1 ~= 0 then
    error("vidu.client: max_connections must be a whole number >= 1", 2)
  end

  local max_streams = opts.max_streams or DEFAULT_MAX_STREAMS
  if max_streams < 0 or max_streams % 1 ~= 0 or max_streams == math.huge then
    error("vidu.client: max_streams must be a whole number >= 0", 2)
  end

  local self = setmetatable({
    provider = pname,
    -- Status streams (driver.follow): on unless stream = false; open ones counted here.
    streaming = opts.stream ~= false and driver.follow ~= nil and max_streams > 0,
    max_streams = max_streams, streams_open = 0, streams_peak = 0,
    driver = driver,
    base_url = base_url,
    custom_base_url = opts.base_url ~= nil,
    timeout = opts.timeout or 30,
    connect_timeout = opts.connect_timeout or 10,
    download_timeout = opts.download_timeout or 0,
    stall_timeout = opts.stall_timeout or 60,
    poll = poll,
    retry = retry.policy(policy_opts),
    max_connections = max_connections,
    scheduler = opts.scheduler or scheduler.default(),
    on_event = opts.on_event,
    _log = log_for(opts.log),
    _deadlines = setmetatable({}, { __mode = "k" }),
    -- id -> task, for the tasks of this process still referenced (client:deliver).
    _live = setmetatable({}, { __mode = "v" }),
  }, Client)
  secrets[self] = key
  -- Streams hold connections of their own, beside the max_connections request slots: the
  -- engine's per-host bound must leave room for both (vidu.scheduler).
  if self.streaming and self.scheduler.reserve_connections then
    self.scheduler:reserve_connections(self, max_connections + max_streams)
  end
  -- The request path, with this client's driver hooks and settings bound once.
  self._http = http.new{
    provider = pname, key = function() return secrets[self] end,
    auth_header = driver.auth_header, parse_error = driver.parse_error,
    scheduler = self.scheduler, base_url = base_url, timeout = self.timeout,
    connect_timeout = self.connect_timeout, download_timeout = self.download_timeout,
    stall_timeout = self.stall_timeout, ca_file = opts.ca_file, ca_path = opts.ca_path,
    own = self:_own_origins(), log = self._log,
    policy = self.retry, max_connections = max_connections,
  }
  -- What this client's finished tasks taught about how long a task takes (see vidu.pace).
  self.pace = Pace.new(self.scheduler)
  -- The provider's limits, kept in the client so a batch queues here instead of meeting
  -- 429s: tasks in flight at once (a task holds its place until it is seen finished), and
  -- submits per `per` seconds.
  if limits and limits.concurrent then
    self._inflight = self.scheduler:semaphore(limits.concurrent)
  end
  -- Submits past their checks, as many as there are connection slots: the rest wait at the
  -- door of the driver's submit, in a shallow frame, instead of deep in it at a slot's
  -- queue. A parked coroutine's stack can only shrink (at a collection) to twice what its
  -- frames use: 10,000 submits queued inside the request path held ~64 MB of stack.
  self._submits = self.scheduler:semaphore(max_connections)
  if limits and limits.rate then
    self._rate = { n = limits.rate, per = limits.per or 60, sent = {} }
  end

  -- Provider-specific options: the driver checks them (and raises on unknown names).
  driver_options(self, driver, extra, pname)
  return self
end

-- The origins the key may go to: the base URL's, and with the provider's own hosts (no
-- base_url given) the other API hosts the driver documents (fal's REST host).
function Client:_own_origins()
  local own = { url.origin(self.base_url) }
  if not self.custom_base_url then
    for _, h in ipairs(self.driver.api_hosts or {}) do own[#own + 1] = url.origin(h) end
  end
  return own
end

--- True when `u` is an http(s) URL on one of the hosts this client sends its key to.
function Client:is_own(u)
  local o = url.origin(u)
  if not o then return false end
  for _, x in ipairs(self:_own_origins()) do if x == o then return true end end
  return false
end

function Client.__tostring(self)
  return "vidu.client<" .. self.provider .. ">"
end

-- The key, for the request path and redaction only.
function Client:_key()
  return secrets[self]
end

-- The connection slots of one origin (a semaphore of max_connections).
function Client:_slots(origin)
  return self._http:_slots(origin)
end

--- Sends an event to the client's on_event hook and to the task's own (client:submit's
-- opts.on_event). event = { type = "submitting" | "submitted" | "updated" | "finished" |
-- "downloaded" | "error", provider, task, handle, status, params (submitting), error
-- (error, and finished when it failed), path (downloaded) }.
function Client:_emit(kind, task, extra, own)
  own = own or (task and task.on_event)
  if not self.on_event and not own then return end
  local ev = { type = kind, provider = self.provider }
  if task then
    ev.task, ev.handle, ev.status = task, task.handle, task.status
    if task.error and kind == "finished" then ev.error = task.error end
  end
  if extra then for k, v in pairs(extra) do ev[k] = v end end
  if self.on_event then self.on_event(ev) end
  if own then own(ev) end
end

--- Performs one HTTP request with retries (see vidu.http and the driver contract).
-- Returns resp = { status, headers, body, json, url, time } | nil, err. Inside a call made
-- with Client:_within (a wait's poll, say), the call's deadline bounds it.
function Client:request(spec)
  return self._http:request(spec, self:_deadline())
end

-- Runs fn(...) with every request this coroutine makes bounded by `deadline` (the
-- scheduler's clock; the tighter one wins when calls nest), whatever driver makes them.
-- Returns fn's results. (No pcall: it could not yield on Lua 5.1. A driver that raises
-- leaves the entry to its coroutine, which is collected with it.)
function Client:_within(deadline, fn, ...)
  if not deadline then return fn(...) end
  local co = deadline_key(self)
  local prev = self._deadlines[co]
  if not prev or deadline < prev then self._deadlines[co] = deadline end
  local a, b, c = fn(...)
  self._deadlines[co] = prev
  return a, b, c
end

-- The deadline of the call in progress in this coroutine (see Client:_within), or nil: for a
-- driver that waits on something other than a request of its own (vidu's batched polls).
function Client:_deadline()
  return self._deadlines[deadline_key(self)]
end

-- opts of submit and task: a table with on_event (a function), or nil.
local function check_opts(opts, where, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(where .. ": options must be a table", 3) end
  for k, v in pairs(opts) do
    if not allowed[k] then error(where .. ": unknown option " .. tostring(k), 3) end
    if k == "on_event" and type(v) ~= "function" then
      error(where .. ": on_event must be a function", 3)
    end
  end
  return opts
end

--- Validates params exactly as submit does, sending nothing: the normalised parameters
-- (model filled in, image resolved to its descriptor) | nil, err. Wrong types and unknown
-- names raise.
function Client:check(params)
  if type(params) ~= "table" then error("client:check expects a table of parameters", 2) end
  local driver = self.driver
  if driver.check then return driver.check(self, params) end
  return validate.check(driver.rules, params)
end

--- Validates params (no I/O) and submits a generation. Returns a Task | nil, err.
-- opts: on_event = function(event), this task's own event hook (see Client:_emit).
-- A wrong type or an unknown parameter name raises. When the provider may have created the
-- task despite an error, err.may_exist is true and err.task_id is set when it is known.
function Client:submit(params, opts)
  if type(params) ~= "table" then error("client:submit expects a table of parameters", 2) end
  opts = check_opts(opts, "client:submit", SUBMIT_OPTS)
  local checked, err = self:check(params)
  if not checked then return nil, err end
  self:_admit()
  -- Before any byte of the paid request leaves: a journal records the intent here.
  self:_emit("submitting", nil, { params = checked }, opts.on_event)
  local gate = self._submits
  gate:acquire()
  -- (through a pcall: a driver that raises must not keep its place; apart: the caller's
  -- coroutine, which usually goes on to wait minutes, keeps a small stack, not the depth of
  -- building and sending the body)
  local done, handle, obs = self.scheduler:pcall_apart(self.driver.submit, self, checked)
  gate:release()
  if not done then error(handle, 0) end
  if not handle then
    err = obs
    if self._inflight and not err.may_exist then self._inflight:release() end
    self:_emit("error", nil, { params = checked, error = err }, opts.on_event)
    return nil, err
  end
  local task = Task.new(self, handle)
  -- Only fields with a value: a waiting task is the bulk of a big batch's memory, and a
  -- table of 17 fields or more takes 32 slots (a false flag holds one like any value).
  if self._inflight then task._holds_slot = true end
  task.on_event = opts.on_event
  -- The kind of task it learns about (vidu.pace); only a task submitted here has one, so
  -- only its age is known and the pace learns from it (see Task:_finished).
  task.pace_key = Pace.key(checked)
  if self._log then
    self._log("info", string.format("%s task %s submitted (%s)", self.provider, task.id,
      tostring(checked.model)))
  end
  self:_emit("submitted", task, { params = checked })
  if obs then task:apply(obs) end
  return task
end

-- Waits until the client's limits let one more submit go: a place among the tasks in flight,
-- and room in the rate window.
function Client:_admit()
  if self._inflight then self._inflight:acquire() end
  local rate = self._rate
  if not rate then return end
  local sched = self.scheduler
  while true do
    local now = sched:time()
    local sent, kept = rate.sent, {}
    for i = 1, #sent do if now - sent[i] < rate.per then kept[#kept + 1] = sent[i] end end
    rate.sent = kept
    if #kept < rate.n then
      kept[#kept + 1] = now
      return
    end
    if self._log then
      self._log("info", string.format("%s: %d submits in %g s, waiting", self.provider, rate.n,
        rate.per))
    end
    sched:sleep(kept[1] + rate.per - now)
  end
end

-- A finished task gives its place among the tasks in flight back.
function Client:_release_slot(task)
  if task._holds_slot then
    task._holds_slot = nil
    self._inflight:release()
  end
end

--- Re-attaches to a task by its handle (task.handle, as saved; JSON round trips keep it) or
-- its bare id, in this process or another. Polls it once so the task's status is real and a
-- wrong id is reported: Task | nil, err. opts: poll = false skips the first poll; on_event;
-- with a bare id, the driver's re-attach options (fal: model, for a request of a model other
-- than the default).
function Client:task(ref, opts)
  local rt = type(ref)
  if rt ~= "string" and rt ~= "number" and rt ~= "table" then
    error("client:task expects a task id or handle, got " .. rt, 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("client:task: options must be a table", 2) end
  if opts.on_event ~= nil and type(opts.on_event) ~= "function" then
    error("client:task: on_event must be a function", 2)
  end
  local driver = self.driver
  local handle = {}
  if rt == "table" then
    if ref.provider ~= nil and ref.provider ~= self.provider then
      error(string.format("client:task: the handle is a %s task, this client is %s",
        tostring(ref.provider), self.provider), 2)
    end
    for k, v in pairs(ref) do if k ~= "provider" then handle[k] = v end end
  else
    handle.id = ref
  end
  if type(handle.id) == "number" then handle.id = string.format("%.0f", handle.id) end
  if type(handle.id) ~= "string" or handle.id == "" then
    error("client:task: the task id must be a non-empty string", 2)
  end
  local allowed = driver.attach_options or {}
  for k, v in pairs(opts) do
    if k ~= "poll" and k ~= "on_event" then
      if rt == "table" or not allowed[k] then
        error(string.format("client:task: unknown re-attach option '%s' for %s", tostring(k),
          self.provider), 2)
      end
      if type(v) ~= allowed[k] then
        error(string.format("client:task: option '%s' must be a %s", k, allowed[k]), 2)
      end
      handle[k] = v
    end
  end
  if driver.attach then handle = driver.attach(self, handle) end
  local task = Task.new(self, handle)
  task.on_event = opts.on_event
  if opts.poll ~= false then
    local ok, err = task:refresh()
    if not ok then return nil, err end
  end
  return task
end

--- Applies a provider's callback to the live task it is about, so a task waiting in
-- task:wait finishes the moment its callback arrives (polling stays as the slow fallback).
-- `what`: the callback's raw body (a string, read with vidu.webhooks.read) or an observation
-- already read (then `id` names the task). Verify the callback first (vidu.webhooks.verify).
-- Late, duplicate and out-of-order callbacks never move a task back (Task:apply).
-- Returns task, changed | nil, err (no live task of this client has that id: re-attach
-- with client:task(handle) first, or the body cannot be read).
function Client:deliver(what, id)
  local obs = what
  if type(what) == "string" then
    local about
    obs, about = require("vidu.webhooks").read(self.provider, what)
    if not obs then return nil, about end
    id = id or about
  elseif type(what) ~= "table" then
    error("client:deliver expects a callback body (string) or an observation (table)", 2)
  end
  if id == nil then error("client:deliver: an observation needs the task id", 2) end
  id = tostring(id)
  local task = self._live[id]
  if not task then
    return nil, errors.new{
      kind = "invalid", provider = self.provider, task_id = id, field = "id",
      message = "no live task " .. id .. " on this client: re-attach with client:task(handle)"
        .. " first",
    }
  end
  -- A task its callback finished teaches the pace nothing: waking the other waiters to poll
  -- would undo what the callbacks save.
  task._by_callback = true
  return task, task:apply(obs)
end

--- Counters: requests sent (every attempt, streams included), retries, request bodies held,
-- and the status streams open now (streams) and at most so far (streams_peak).
function Client:counters()
  local c = self._http:counters()
  c.streams, c.streams_peak = self.streams_open, self.streams_peak
  return c
end

-- Takes one of the client's stream places if one is free: true | false (never waits: a task
-- without one polls).
function Client:_stream_acquire()
  if not self.streaming or self.streams_open >= self.max_streams then return false end
  self.streams_open = self.streams_open + 1
  if self.streams_open > self.streams_peak then self.streams_peak = self.streams_open end
  return true
end

-- Gives a stream place back.
function Client:_stream_release()
  self.streams_open = self.streams_open - 1
end

--- Opens a status stream (see vidu.http's Requester:stream): the scheduler's stream object
-- | nil, err. For drivers' follow functions.
function Client:stream(spec)
  return self._http:stream(spec)
end

return client_mod
