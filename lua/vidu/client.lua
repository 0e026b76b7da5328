--- The client object: one provider, one key, one base URL, its connection slots.
--
-- The API key lives in a weak table keyed by the client, not on the client itself, so
-- printing or dumping a client (or a task, which points at its client) cannot show it.
local http = require("vidu.http")
local retry = require("vidu.retry")
local scheduler = require("vidu.scheduler")
local Task = require("vidu.task")
local Pace = require("vidu.pace")

local client_mod = {}

local Client = {}
Client.__index = Client

-- client -> API key. Weak keys: a dropped client takes its key with it.
local secrets = setmetatable({}, { __mode = "k" })

-- Options the runtime understands; everything else belongs to the driver.
local RUNTIME = {
  api_key = "string", base_url = "string", timeout = "number", connect_timeout = "number",
  download_timeout = "number", poll = "table", retries = "number", retry = "table",
  max_connections = "number", scheduler = "table",
}

local POLL_FIELDS = { first = true, max = true, factor = true, interval = true }

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
  if not name:match("^[%w_]+$") then error("vidu.client: unknown provider " .. name, 3) end
  local ok, driver = pcall(require, "vidu.providers." .. name)
  if not ok then
    if tostring(driver):find("module 'vidu.providers." .. name .. "' not found", 1, true) then
      error("vidu.client: unknown provider \"" .. name .. "\"", 3)
    end
    error(driver, 0)
  end
  return driver
end

--- Creates a client for provider `name` (or a driver table, for tests and extensions).
-- opts: api_key (default: the provider's environment variable), base_url (replaces every
-- host of the provider), timeout (per request, s, default 30), connect_timeout (default 10),
-- download_timeout (default 0 = none), poll = { first, max, factor [, interval] } (task:wait's
-- schedule; see Task:wait),
-- retries (total attempts per request, default 5), retry (a retry.policy table),
-- max_connections (per host, default 32), scheduler; other names go to the driver.
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

  local key = opts.api_key
  if key == nil and driver.env_key then key = os.getenv(driver.env_key) end
  if key == nil or key == "" then
    error(string.format("vidu.client(%q): no API key: pass api_key or set %s" ..
      " (against the emulator any non-empty key works)", pname,
      tostring(driver.env_key or "the provider's key variable")), 2)
  end

  local base_url = opts.base_url or driver.default_base_url
  if not base_url then
    error(string.format("vidu.client(%q): base_url is required for this provider", pname), 2)
  end
  if not http.origin(base_url) then
    error("vidu.client: base_url must be an http(s) URL: " .. base_url, 2)
  end
  if base_url:sub(-1) == "/" then base_url = base_url:sub(1, -2) end

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

  local max_connections = opts.max_connections or 32
  if max_connections < 1 or max_connections % 1 ~= 0 then
    error("vidu.client: max_connections must be a whole number >= 1", 2)
  end

  local self = setmetatable({
    provider = pname,
    driver = driver,
    base_url = base_url,
    custom_base_url = opts.base_url ~= nil,
    timeout = opts.timeout or 30,
    connect_timeout = opts.connect_timeout or 10,
    download_timeout = opts.download_timeout or 0,
    poll = poll,
    retry = retry.policy(policy_opts),
    max_connections = max_connections,
    scheduler = opts.scheduler or scheduler.default(),
    options = extra,
    slots = {},
    stats = { requests = 0, retries = 0 },
  }, Client)
  -- What this client's finished tasks taught about how long a task takes (see vidu.pace).
  self.pace = Pace.new(self.scheduler)
  secrets[self] = key

  -- Provider-specific options: the driver checks them (and raises on unknown names).
  if driver.init then
    driver.init(self, extra)
  elseif driver.options then
    for k, v in pairs(extra) do
      local t = driver.options[k]
      if not t then error("vidu.client(\"" .. pname .. "\"): unknown option " .. tostring(k), 2) end
      if t ~= "any" and type(v) ~= t then
        error("vidu.client: option " .. k .. " must be a " .. t .. ", got " .. type(v), 2)
      end
    end
  elseif next(extra) then
    error("vidu.client(\"" .. pname .. "\"): unknown option " .. tostring((next(extra))), 2)
  end
  return self
end

function Client.__tostring(self)
  return "vidu.client<" .. self.provider .. ">"
end

-- The key, for http.lua only (auth header and redaction).
function Client:_key()
  return secrets[self]
end

-- The connection slots of one origin: a semaphore of max_connections, made on first use.
function Client:_slots(origin)
  local s = self.slots[origin]
  if not s then
    s = self.scheduler:semaphore(self.max_connections)
    self.slots[origin] = s
  end
  return s
end

--- Performs one HTTP request with retries (see vidu.http and the driver contract).
-- Returns resp = { status, headers, body, json, url, time } | nil, err.
function Client:request(spec)
  return http.request(self, spec)
end

--- Validates params (no I/O) and submits a generation. Returns a Task | nil, err.
-- A wrong type or an unknown parameter name raises. When the provider may have created the
-- task despite an error, err.may_exist is true and err.task_id is set when it is known.
function Client:submit(params)
  if type(params) ~= "table" then error("client:submit expects a table of parameters", 2) end
  local driver = self.driver
  local checked, err = driver.check(self, params)
  if not checked then return nil, err end
  local fields
  fields, err = driver.submit(self, checked)
  if not fields then return nil, err end
  local task = Task.new(self, fields)
  task.submitted = true -- its age is known: the pace may learn from it
  return task
end

--- Re-attaches to a task by its id (after a restart, say). Polls it once so the task's
-- status is real and a wrong id is reported: Task | nil, err. opts go to the driver;
-- opts.poll = false skips the first poll.
function Client:task(id, opts)
  if type(id) ~= "string" and type(id) ~= "number" then
    error("client:task expects a task id, got " .. type(id), 2)
  end
  opts = opts or {}
  local skip = opts.poll == false
  local driver_opts = {}
  for k, v in pairs(opts) do if k ~= "poll" then driver_opts[k] = v end end
  local fields = self.driver.attach(self, tostring(id), driver_opts)
  local task = Task.new(self, fields)
  if not skip then
    local ok, err = task:refresh()
    if not ok then return nil, err end
  end
  return task
end

--- Counters: requests sent (every attempt) and retries.
function Client:counters()
  return { requests = self.stats.requests, retries = self.stats.retries }
end

return client_mod
