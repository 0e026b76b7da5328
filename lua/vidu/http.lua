--- client:request: one HTTP call with the retry policy, the submit-safety rule, per-host
-- connection bounds and error mapping. Drivers call it; users rarely need to.
--
-- The submit-safety rule: a request that is not idempotent (a submit, which costs money) is
-- sent again only when nothing can have been created: the connection never opened
-- (refused, name lookup, connect timeout: the engine says sent = false) or the provider
-- answered 429 or 503. After a timeout or a reset once the bytes were sent it is never
-- re-sent; the error has kind "uncertain" and may_exist = true.
local errors = require("vidu.errors")
local json = require("vidu.json")
local retry = require("vidu.retry")

local http = {}

-- The names a request spec may use; anything else is a typo and raises.
local SPEC = {
  method = true, url = true, path = true, json = true, body = true, body_file = true,
  headers = true, idempotent = true, auth = true, output = true, timeout = true,
  connect_timeout = true, on_progress = true, max_response = true, attempts = true,
  expect_json = true,
}

-- RFC 9110 idempotent methods; POST and PATCH are not.
local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }

--- True when `s` is an absolute http(s) URL with a host and no whitespace: the one check
-- every layer uses before it sends anything (or our key) to a URL.
function http.is_url(s)
  if type(s) ~= "string" or s:find("[%s%c]") then return false end
  local scheme, host = s:match("^(%a[%w+.-]*)://([^/?#]+)")
  if not scheme then return false end
  scheme = scheme:lower()
  return (scheme == "http" or scheme == "https") and host ~= ""
end

--- The "scheme://host[:port]" part of an absolute http(s) URL (lower-cased), or nil.
function http.origin(url)
  local o = type(url) == "string" and url:match("^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+")
  return o and o:lower() or nil
end

--- Joins a base URL and a path with exactly one slash between them.
function http.join(base, path)
  if path == "" then return base end
  if base:sub(-1) == "/" then base = base:sub(1, -2) end
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  return base .. path
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

local function status_error(client, resp, idempotent, retrying)
  local parsed
  local parse = client.driver.parse_error
  if parse then
    -- A driver bug or a body it did not expect must not hide the HTTP error itself.
    local ok, p = pcall(parse, resp)
    if ok and type(p) == "table" then parsed = p end
  end
  parsed = parsed or default_parse_error(resp)
  local status = resp.status
  local message = parsed.message
  if type(message) ~= "string" then
    message = message ~= nil and tostring(message) or nil
  end
  message = message or ("HTTP " .. status)
  local h = resp.headers
  local kind = errors.kind_for_status(status)
  -- A driver may know better from the provider's code (a 400 that means moderation).
  if kind == "http" and parsed.kind and errors.kinds[parsed.kind] then kind = parsed.kind end
  local err = errors.new{
    kind = kind,
    provider = client.provider,
    status = status,
    code = parsed.code,
    message = message,
    retryable = retrying,
    retry_after = retry.parse_retry_after(h["retry-after"]),
    request_id = parsed.request_id or h["x-request-id"] or h["x-fal-request-id"]
      or h["request-id"],
    url = resp.url,
  }
  if parsed.retryable == false then err.retryable = false end
  if not idempotent and status >= 500 and status ~= 503 then
    -- The server may have created the task before failing; say so, do not re-send.
    err.may_exist = true
    err.message = err.message .. " (the request was processed with an error: the task may" ..
      " exist; check with client:task(id) if you learn its id)"
  end
  return err, parsed
end

local NET_KIND = { timeout = "timeout", canceled = "canceled", file = "io" }

local function transfer_error(client, item, method, url, uncertain)
  if uncertain then
    return errors.new{
      kind = "uncertain",
      provider = client.provider,
      may_exist = true,
      retryable = false,
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
    provider = client.provider,
    code = item.error,
    sent = item.sent,
    status = item.status,
    url = url,
    message = string.format("%s %s: %s", method, url, tostring(item.message or item.error)),
  }
end

--- Performs a request for `client` (see the contract for the spec). Returns
-- resp = { status, headers, body, json, url, time } | nil, err.
function http.request(client, spec)
  if type(spec) ~= "table" then error("client:request expects a table", 3) end
  for k in pairs(spec) do
    if not SPEC[k] then error("client:request: unknown option " .. tostring(k), 3) end
  end
  local method = (spec.method or "GET"):upper()
  local url = spec.url
  if url == nil then
    if type(spec.path) ~= "string" then error("client:request needs url or path", 3) end
    if not client.base_url then
      error("client:request: path given but the client has no base_url", 3)
    end
    url = http.join(client.base_url, spec.path)
  end
  local origin = http.origin(url)
  if not origin then
    return nil, errors.new{
      kind = "invalid", provider = client.provider, field = "url", limit = "http(s)",
      message = "only http and https URLs are allowed: " .. tostring(url):sub(1, 100),
    }
  end
  local idempotent = spec.idempotent
  if idempotent == nil then idempotent = IDEMPOTENT[method] == true end

  local headers = {}
  if spec.headers then
    for k, v in pairs(spec.headers) do headers[k] = v end
  end
  local body = spec.body
  if spec.json ~= nil then
    body = json.encode(spec.json)
    if headers["Content-Type"] == nil then headers["Content-Type"] = "application/json" end
  end
  if not spec.output and headers["Accept"] == nil then headers["Accept"] = "application/json" end
  local key = client:_key()
  if spec.auth ~= false and key and client.driver.auth_header then
    headers["Authorization"] = client.driver.auth_header(key)
  end

  local timeout = spec.timeout
  if timeout == nil then timeout = spec.output and client.download_timeout or client.timeout end
  local req = {
    method = method, url = url, headers = headers, body = body, body_file = spec.body_file,
    output = spec.output, timeout = timeout,
    connect_timeout = spec.connect_timeout or client.connect_timeout,
    max_response = spec.max_response,
    -- libcurl re-sends a request by itself when a reused keep-alive connection turns out
    -- dead before any answer byte, POST included: a second paid task. A submit therefore
    -- never rides on a pooled connection; idempotent calls (an upload PUT, too) may.
    fresh_connect = not idempotent,
  }
  local sched = client.scheduler

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

  local policy = client.retry
  if spec.attempts then policy = retry.policy{ attempts = spec.attempts } end
  local slots = client:_slots(origin)
  local attempt = 0
  while true do
    attempt = attempt + 1
    slots:acquire()
    client.stats.requests = client.stats.requests + 1
    local item = sched:transfer(req, on_tick and { on_tick = on_tick } or nil)
    slots:release()

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
      again = retry.should_retry(item, idempotent)
      local parsed
      err, parsed = status_error(client, resp, idempotent, again)
      -- The driver knows its own error bodies better (fal: a 504 from the user's own start
      -- timeout is final; a 409 is worth another try on an idempotent call).
      if parsed.retryable == false then
        again = false
      elseif parsed.retryable == true and idempotent then
        again = true
      end
      err.retryable = again
    else
      again, why = retry.should_retry(item, idempotent)
      err = transfer_error(client, item, method, url, why == "uncertain")
      err.retryable = again or false
    end
    errors.redact(err, key)
    if not again then return nil, err end
    local delay = retry.delay_for(attempt, err, policy)
    if not delay then return nil, err end
    client.stats.retries = client.stats.retries + 1
    sched:sleep(delay)
  end
end

return http
