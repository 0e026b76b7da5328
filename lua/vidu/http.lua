--- The request path of one client: one HTTP call with the retry policy, the submit-safety
-- rule, per-host connection bounds and error mapping. A client builds its requester once,
-- binding its driver's hooks (auth header, error parser), its key and its settings, so no
-- module reaches into another's fields. Drivers call it through client:request.
--
-- The submit-safety rule: a request that is not idempotent (a submit, which costs money) is
-- sent again only when nothing can have been created: the connection never opened
-- (refused, name lookup, connect timeout: the engine says sent = false) or the provider
-- answered 429 or 503. After a timeout or a reset once the bytes were sent it is never
-- re-sent; the error has kind "uncertain" and may_exist = true.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local errors = require("vidu.errors")
local json = require("vidu.json")
local retry = require("vidu.retry")
local url_mod = require("vidu.url")

local http = {}

-- The names a request spec may use; anything else is a typo and raises.
local SPEC = {
  method = true, url = true, path = true, json = true, body = true, body_file = true,
  headers = true, idempotent = true, auth = true, output = true, timeout = true,
  connect_timeout = true, on_progress = true, max_response = true, attempts = true,
  expect_json = true, deadline = true, read_errors = true, stall_timeout = true,
  elide_data_uris = true,
}

-- RFC 9110 idempotent methods; POST and PATCH are not.
local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }

local Requester = {}
Requester.__index = Requester

--- Binds a request path. cfg: provider (name for errors), key (function returning the API
-- key), auth_header (function(key) -> header value, or nil), parse_error (function(resp) ->
-- { code, message, kind, retryable, request_id }, or nil), scheduler, base_url, timeout,
-- connect_timeout, download_timeout, stall_timeout (downloads: seconds without progress),
-- ca_file, ca_path, policy (a retry.policy), max_connections, own (origins the key may go
-- to: the base URL's and the provider's documented API hosts), log (function(level, line),
-- level "info" or "debug"; see vidu.client's log option).
function http.new(cfg)
  local own = {}
  for _, o in ipairs(cfg.own or {}) do own[url_mod.origin(o) or o] = true end
  return setmetatable({
    own = own, log = cfg.log,
    provider = cfg.provider, key = cfg.key, auth_header = cfg.auth_header,
    parse_error = cfg.parse_error, scheduler = cfg.scheduler, base_url = cfg.base_url,
    timeout = cfg.timeout, connect_timeout = cfg.connect_timeout,
    download_timeout = cfg.download_timeout, stall_timeout = cfg.stall_timeout,
    ca_file = cfg.ca_file, ca_path = cfg.ca_path, policy = cfg.policy,
    max_connections = cfg.max_connections,
    slots = {}, requests = 0, retries = 0, bodies = 0, bodies_peak = 0,
  }, Requester)
end

function Requester.__tostring(self)
  return "vidu.http<" .. tostring(self.provider) .. ">"
end

-- The connection slots of one origin: a semaphore of max_connections, made on first use.
function Requester:_slots(origin)
  local s = self.slots[origin]
  if not s then
    s = self.scheduler:semaphore(self.max_connections)
    self.slots[origin] = s
  end
  return s
end

-- Writes a log line, with the key (should an answer have echoed it) redacted.
function Requester:_log(level, line, key)
  if key and #key >= 4 then line = line:gsub(key:gsub("%p", "%%%0"), "***") end
  self.log(level, line)
end

--- Counters: requests sent (every attempt), retries, and the request bodies made from a
-- json function that are held at once now (bodies) and at most so far (bodies_peak).
function Requester:counters()
  return { requests = self.requests, retries = self.retries, bodies = self.bodies,
    bodies_peak = self.bodies_peak }
end

-- Encodes a request body. Returns the JSON text; or, when the value holds streamed parts
-- (tables with a `__json` hook, a `token` their JSON text carries once and the engine `part`
-- that stands in its place: vidu.images.stream), nil and the engine's body_parts: the text
-- around each token, with each part in its place. The engine then sends the file as it
-- reads it, and no Lua string ever holds more than the JSON around it.
local function encode_body(v)
  local found = {}
  local text = json.encode(v, found)
  if #found == 0 then return text end
  local parts, at = {}, 1
  for _, s in ipairs(found) do
    local i, j = text:find(s.token, at, true)
    if not i or text:find(s.token, j + 1, true) then
      error("vidu.http: the body holds a stream placeholder other than once: " .. s.token, 0)
    end
    parts[#parts + 1] = text:sub(at, i - 1)
    parts[#parts + 1] = s.part
    at = j + 1
  end
  parts[#parts + 1] = text:sub(at)
  return nil, parts
end

-- The error message of a non-2xx answer when the driver cannot parse one: the body's own
-- message field if it is JSON, else the start of the body.
local function default_parse_error(resp)
  local j = resp.json
  if type(j) == "table" then
    local e = j.error
    if type(e) == "table" then
      return { code = e.code or e.type, message = e.message }
    end
    return {
      code = j.code or j.reason or j.error_type,
      message = j.message or j.detail or (type(e) == "string" and e or nil),
    }
  end
  local body = resp.body or ""
  body = body:gsub("%s+", " ")
  if #body > 200 then body = body:sub(1, 200) .. "..." end
  return { message = body ~= "" and body or nil }
end

local function looks_json(headers, body)
  local ct = headers and headers["content-type"]
  if ct and ct:find("json", 1, true) then return true end
  return body ~= nil and body:match("^%s*[%[{]") ~= nil
end

-- Builds the response table the driver sees.
local function response(item, expect_json)
  local resp = {
    status = item.status, headers = item.headers or {}, body = item.body,
    url = item.url, time = item.time, bytes = item.bytes,
  }
  if item.body and item.body ~= "" and (expect_json or looks_json(resp.headers, item.body)) then
    local v, jerr = json.decode(item.body)
    resp.json = v
    resp.json_error = jerr
  end
  return resp
end

-- The driver's reading of an error answer (a driver bug or a body it did not expect must not
-- hide the HTTP error itself).
function Requester:_parse(resp)
  if self.parse_error then
    local ok, p = pcall(self.parse_error, resp)
    if ok and type(p) == "table" then return p end
  end
  return default_parse_error(resp)
end

function Requester:_status_error(resp, parsed, idempotent)
  local status = resp.status
  local message = parsed.message
  if type(message) ~= "string" then
    message = message ~= nil and tostring(message) or nil
  end
  message = message or ("HTTP " .. status)
  local h = resp.headers
  local kind = errors.kind_for_status(status)
  -- A driver may know better from the provider's code (a 400 that means moderation, a 403
  -- that means an empty balance).
  if (kind == "http" or kind == "auth") and parsed.kind and errors.kinds[parsed.kind] then
    kind = parsed.kind
  end
  local err = errors.new{
    kind = kind,
    provider = self.provider,
    status = status,
    code = parsed.code,
    message = message,
    retry_after = retry.parse_retry_after(h["retry-after"]),
    request_id = parsed.request_id or h["x-request-id"] or h["x-fal-request-id"]
      or h["request-id"],
    url = resp.url,
  }
  if not idempotent and status >= 500 and status ~= 503 then
    -- The server may have created the task before failing; say so, do not re-send.
    err.may_exist = true
    err.message = err.message .. " (the request was processed with an error: the task may" ..
      " exist; check with client:task(id) if you learn its id)"
  end
  return err
end

local NET_KIND = { timeout = "timeout", stalled = "timeout", canceled = "canceled", file = "io" }

function Requester:_transfer_error(item, method, url, uncertain)
  if uncertain then
    return errors.new{
      kind = "uncertain",
      provider = self.provider,
      may_exist = true,
      sent = true,
      code = item.error,
      status = item.status,
      url = url,
      message = string.format(
        "%s %s was sent but failed before its answer arrived (%s: %s); it was not re-sent" ..
        " because the task may exist and be billed: if you learn its id, re-attach with" ..
        " client:task(id), or check the provider's dashboard",
        method, url, tostring(item.error), tostring(item.message)),
    }
  end
  return errors.new{
    kind = NET_KIND[item.error] or "network",
    provider = self.provider,
    code = item.error,
    sent = item.sent,
    status = item.status,
    url = url,
    message = string.format("%s %s: %s", method, url, tostring(item.message or item.error)),
  }
end

-- The error of a request whose deadline passed before it could (again) be sent.
function Requester:_deadline_error(method, url, last)
  local err = errors.new{
    kind = "timeout", provider = self.provider, retryable = true, url = url,
    message = string.format("%s %s: the deadline passed", method, url),
  }
  if last then
    err.status, err.code, err.cause = last.status, last.code, last
    err.message = err.message .. " (last attempt: " .. tostring(last.message) .. ")"
  end
  return err
end

-- Where a request may go: an http(s) URL, and when it carries the key (`auth` not false and a
-- key set) one of the provider's own hosts, a URL from an answer that points elsewhere being
-- refused rather than sent the key; sets headers.Authorization then. Returns the URL's
-- origin | nil, err.
function Requester:_target(url, headers, auth, key)
  local origin = url_mod.origin(url)
  if not origin then
    return nil, errors.new{
      kind = "invalid", provider = self.provider, field = "url", limit = "http(s)",
      message = "only http and https URLs are allowed: " .. tostring(url):sub(1, 100),
    }
  end
  if auth ~= false and key and self.auth_header then
    if not self.own[origin] then
      return nil, errors.new{
        kind = "invalid", provider = self.provider, field = "url", limit = "the provider's hosts",
        message = string.format("%s is not one of %s's API hosts: the key is not sent there",
          origin, tostring(self.provider)),
      }
    end
    headers["Authorization"] = self.auth_header(key)
  end
  return origin
end

--- Performs a request (see the README's driver contract for the spec). With
-- spec.read_errors, a final HTTP error answer that is not about access (401, 403, 429) comes
-- back as resp (status >= 400) for the driver to read; retries happen as usual first. Returns
-- resp = { status, headers, body, json, url, time } | nil, err. spec.deadline (the
-- scheduler's clock; or `deadline`, the caller's) bounds the whole call, retries and their
-- waits included: each attempt's timeout is cut to what is left, and no retry starts or
-- waits past it.
function Requester:request(spec, deadline)
  if type(spec) ~= "table" then error("client:request expects a table", 3) end
  for k in pairs(spec) do
    if not SPEC[k] then error("client:request: unknown option " .. tostring(k), 3) end
  end
  local method = (spec.method or "GET"):upper()
  local url = spec.url
  if url == nil then
    if type(spec.path) ~= "string" then error("client:request needs url or path", 3) end
    url = url_mod.join(self.base_url, spec.path)
  end
  local headers = {}
  if spec.headers then
    for k, v in pairs(spec.headers) do headers[k] = v end
  end
  local key = self.key()
  local origin, terr = self:_target(url, headers, spec.auth, key)
  if not origin then return nil, terr end
  local idempotent = spec.idempotent
  if idempotent == nil then idempotent = IDEMPOTENT[method] == true end

  local body, body_parts = spec.body, nil
  -- spec.json: a table, encoded here; or a function returning the table, called (and its
  -- answer encoded) only once a connection slot is granted, so requests that queue for a
  -- slot hold no body (see Requester:request). Either may hold a streamed image (see
  -- encode_body): the body then goes to the engine as parts.
  local make_json = type(spec.json) == "function" and spec.json or nil
  if spec.json ~= nil then
    if not make_json then body, body_parts = encode_body(spec.json) end
    if headers["Content-Type"] == nil then headers["Content-Type"] = "application/json" end
  end
  if not spec.output and headers["Accept"] == nil then headers["Accept"] = "application/json" end

  local timeout = spec.timeout
  if timeout == nil then timeout = spec.output and self.download_timeout or self.timeout end
  local req = {
    method = method, url = url, headers = headers, body = body, body_file = spec.body_file,
    body_parts = body_parts,
    output = spec.output, timeout = timeout,
    connect_timeout = spec.connect_timeout or self.connect_timeout,
    max_response = spec.max_response,
    -- An answer's long data: URIs (an inline image echoed back) cut in C (vidu.core engine).
    elide_data_uris = spec.elide_data_uris,
    -- A download that stops moving ends (retryably) instead of hanging forever.
    stall_timeout = spec.stall_timeout or (spec.output and self.stall_timeout) or nil,
    ca_file = self.ca_file, ca_path = self.ca_path,
    -- libcurl re-sends a request by itself when a reused keep-alive connection turns out
    -- dead before any answer byte, POST included: a second paid task. A submit therefore
    -- never rides on a pooled connection; idempotent calls (an upload PUT, too) may.
    fresh_connect = not idempotent,
  }
  local sched = self.scheduler

  local on_tick
  if spec.on_progress then
    local on_progress = spec.on_progress
    local engine = sched:engine()
    local upload = spec.body_file ~= nil and not spec.output
    on_tick = function(id)
      local dn, dt, un, ut = engine:progress(id)
      if dn == nil then return end
      if upload then on_progress(un, ut) else on_progress(dn, dt) end
    end
  end

  local policy = self.policy
  if spec.attempts then policy = retry.policy{ attempts = spec.attempts } end
  deadline = spec.deadline or deadline
  local slots = self:_slots(origin)
  local attempt = 0
  while true do
    attempt = attempt + 1
    if deadline then
      local left = deadline - sched:time()
      if left <= 0 then return nil, self:_deadline_error(method, url) end
      req.timeout = (timeout and timeout > 0 and timeout < left) and timeout or left
    end
    slots:acquire()
    if make_json then
      -- Made now, dropped once sent: a queued request holds no body.
      req.body, req.body_parts = encode_body(make_json())
      self.bodies = self.bodies + 1
      if self.bodies > self.bodies_peak then self.bodies_peak = self.bodies end
    end
    self.requests = self.requests + 1
    local from_file = req.body_file ~= nil or req.body_parts ~= nil
    local t0 = self.log and sched:time()
    local item = sched:transfer(req, on_tick and { on_tick = on_tick } or nil)
    if make_json then
      req.body, req.body_parts = nil, nil
      self.bodies = self.bodies - 1
    end
    slots:release()
    if self.log then
      self:_log("debug", string.format("%s %s -> %s, %s B, %.3f s (attempt %d)", method,
        url_mod.loggable(url), item.ok and tostring(item.status) or tostring(item.error),
        tostring(item.bytes or (item.body and #item.body) or 0), sched:time() - t0, attempt), key)
    end

    local err, again, why
    if item.ok and item.status < 400 then
      local resp = response(item, spec.expect_json)
      if not resp.json_error or not (spec.expect_json or looks_json(resp.headers, item.body)) then
        if on_tick and item.bytes then spec.on_progress(item.bytes, item.bytes) end
        return resp
      end
      -- A 2xx whose JSON does not parse: a proxy or a cut-off body. Treated like a broken
      -- transfer, so an idempotent call retries and a submit is "uncertain".
      item = {
        ok = false, error = "bad_json", sent = true, status = item.status,
        message = "the answer is not valid JSON (" .. tostring(resp.json_error) .. ")",
      }
    end
    if item.ok then
      local resp = response(item, false)
      local parsed = self:_parse(resp)
      again = retry.should_retry(item, idempotent, parsed.retryable)
      if spec.read_errors and not again and errors.kind_for_status(item.status) == "http" then
        return resp
      end
      err = self:_status_error(resp, parsed, idempotent)
    elseif item.error == "file" and from_file and not req.output then
      -- The request body could not be read (a file that vanished or changed size): the
      -- request never went out whole, so nothing can have been made from it. Not retried:
      -- the file is what needs fixing, and the message names it.
      again = false
      err = self:_transfer_error(item, method, url, false)
    else
      again, why = retry.should_retry(item, idempotent)
      err = self:_transfer_error(item, method, url, why == "uncertain")
    end
    err.retryable = again == true
    errors.redact(err, key)
    if not again then return nil, err end
    local delay = retry.delay_for(attempt, err, policy)
    if not delay then return nil, err end
    if deadline and sched:time() + delay >= deadline then
      return nil, errors.redact(self:_deadline_error(method, url, err), key)
    end
    self.retries = self.retries + 1
    if self.log then
      self:_log("info", string.format("retrying %s %s in %.2f s: %s", method,
        url_mod.loggable(url), delay, err.status and ("HTTP " .. err.status) or tostring(err.code)),
        key)
    end
    sched:sleep(delay)
  end
end

--- Opens a stream (a GET whose body is read while it arrives; see Scheduler:stream) with the
-- client's auth, hosts check and logging, but outside the per-origin connection slots: a
-- stream lasts as long as its task, and must not hold a slot a submit needs. The caller
-- bounds how many are open (the client's max_streams). No retries: a refused or broken
-- stream is the caller's cue to poll. spec: url, headers, max_response (bytes waiting,
-- default 1 MiB), deadline (the scheduler's clock: the transfer's own timeout). Returns the
-- scheduler's stream object | nil, err.
function Requester:stream(spec)
  local url = spec.url
  local headers = { Accept = "text/event-stream" }
  for k, v in pairs(spec.headers or {}) do headers[k] = v end
  local key = self.key()
  local origin, terr = self:_target(url, headers, true, key)
  if not origin then return nil, terr end
  local sched = self.scheduler
  local timeout = 0
  if spec.deadline then
    timeout = spec.deadline - sched:time()
    if timeout <= 0 then return nil, self:_deadline_error("GET", url) end
  end
  self.requests = self.requests + 1
  if self.log then self:_log("debug", "GET " .. url_mod.loggable(url) .. " (stream)", key) end
  return sched:stream{
    method = "GET", url = url, headers = headers, timeout = timeout,
    connect_timeout = self.connect_timeout, max_response = spec.max_response or 1024 * 1024,
    ca_file = self.ca_file, ca_path = self.ca_path, skip_repeats = spec.skip_repeats,
  }
end

return http
