--- fal.ai's queue API (queue.fal.run) for fal-ai/vidu/q1/image-to-video and other models.
--
-- What fal asks of a client (fal's queue docs and its official JS/Python clients):
-- * submit to the full model id, but status/result/cancel live under owner/app only: use the
--   status_url, response_url and cancel_url that submit returns, never rebuild them from the
--   full id (we build them from owner/app only to re-attach by id);
-- * status answers 202 while pending and 200 when COMPLETED, and a COMPLETED status can
--   still be a failure: the result is always read and its HTTP status checked;
-- * local images go through fal's storage (initiate, then PUT) by default.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local images = require("vidu.images")
local url = require("vidu.url")
local fields = require("vidu.providers.fields")
local common = require("vidu.providers.common")
local json = require("vidu.json")
local sse = require("vidu.sse")

local str, tab = common.str, common.tab
local F = fields.F
local MB = 1000 * 1000

local fal = common.driver("fal")
-- fal's REST host (storage uploads). A base_url given to the client replaces it too, so one
-- emulator URL serves every host.
fal.rest_base_url = "https://rest.fal.ai"
fal.default_model = "fal-ai/vidu/q1/image-to-video"
-- fal reports queue position and logs while waiting; poll briskly at first.
fal.poll_defaults = { first = 1, max = 10, factor = 1.5 }
fal.attach_options = { model = "string" }
-- The other API host the key goes to (storage uploads), when base_url is fal's own.
fal.api_hosts = { fal.rest_base_url }

-- App namespaces that add one path segment before owner/app (fal's APP_NAMESPACES).
local NAMESPACES = { workflows = true, comfy = true }

-- Error types that mean content moderation (fal's 422 detail[].type for policy refusals).
local MODERATED = { content_policy_violation = true }

-- fal model ids are owner/app[/path]: segments of letters, digits, '-', '_' and '.'.
local function check_model_id(v)
  local ok = v:match("^[%w._-]+/[%w._-]+") and not v:find("//", 1, true)
    and not v:find("[^%w._/-]") and v:sub(-1) ~= "/"
  if ok then return true end
  return nil, "owner/app[/path]", string.format("%q is not a fal model id (owner/app[/path])", v)
end

--- What fal takes (fal-ai/vidu/q1/image-to-video's input schema, fal's queue headers):
-- prompt up to 1500 characters; images through fal storage by default, inline (data: URI)
-- only with upload = false and under 10 MB (whether this model takes data: URIs is
-- unconfirmed); fal states no image size limit, Vidu's 50 MB presumably applies.
fal.rules = fields.rules({
  { "model", { t = "string", check = check_model_id } },
  { "prompt", fields.with(F.prompt, { required = true }) }, { "seed", F.seed },
  { "movement_amplitude", F.movement_amplitude },
  { "fal_webhook", { t = "string", url = true } },
  { "priority", { t = "string", enum = { "normal", "low" } } },
  -- Both official clients refuse 1 s and less (fal's docs say above 0.1 s).
  { "start_timeout", { t = "number", above = 1 } },
  { "hint", { t = "string", text = true, nonempty = true, header = true } },
  { "upload", F.upload }, { "image", F.image },
}, nil, {
  name = "fal", prompt_max = 1500, default_model = fal.default_model,
  image = { max_bytes = 50 * MB, inline_below = 10 * MB, can_upload = true,
    upload_default = true },
})

--- The Authorization header value: "Key <FAL_KEY>".
function fal.auth_header(key)
  return "Key " .. key
end

--- owner/app of a model id ("fal-ai/vidu/q1/image-to-video" -> "fal-ai/vidu"): the part of
-- the id that status, result and cancel URLs use.
function fal.app_id(model)
  local parts = {}
  for seg in model:gmatch("[^/]+") do parts[#parts + 1] = seg end
  local n = NAMESPACES[parts[1]] and 3 or 2
  return table.concat(parts, "/", 1, math.min(n, #parts))
end

--- Reads a fal error body: {"detail": "text"} or {"detail": [{loc, msg, type}]} (422), with
-- error_type in the body or the X-Fal-Error-Type header.
function fal.parse_error(resp)
  local out = {}
  local j = tab(resp and resp.json)
  local h = resp and resp.headers or {}
  if j then
    local detail = j.detail
    if type(detail) == "string" then
      out.message = detail
    elseif tab(detail) then
      local parts = {}
      for _, d in ipairs(detail) do
        if tab(d) then
          local loc = tab(d.loc) and table.concat(d.loc, ".", 1, #d.loc) or nil
          parts[#parts + 1] = (loc and (loc .. ": ") or "") .. tostring(str(d.msg) or "invalid")
          out.code = out.code or str(d.type)
        end
      end
      if #parts > 0 then out.message = table.concat(parts, "; ") end
    end
    out.code = str(j.error_type) or str(j.type) or out.code
    if not out.message then out.message = str(j.error) or str(j.message) end
  end
  out.code = out.code or str(h["x-fal-error-type"])
  if not out.message then out.message = common.excerpt(resp and resp.body) end
  local retry_hdr = h["x-fal-retryable"] or h["x-fal-needs-retry"]
  if retry_hdr then out.retryable = (retry_hdr == "true" or retry_hdr == "1") end
  -- A 504 of our own start_timeout (X-Fal-Request-Timeout) is final, not an outage.
  if resp and resp.status == 504 and h["x-fal-request-timeout-type"] == "user" then
    out.retryable = false
    out.kind = "timeout"
  end
  if out.code and MODERATED[out.code] then out.kind = "moderated" end
  return out
end

-- The REST host: fal's own, unless the client was pointed somewhere else (the emulator).
local function rest_base(client)
  return client.custom_base_url and client.base_url or fal.rest_base_url
end

--- Uploads a local image to fal's storage: POST /storage/upload/initiate, then PUT the bytes
-- to the pre-signed upload_url (no Authorization). Returns the file_url.
function fal.upload(client, desc)
  local resp, err = client:request{
    method = "POST",
    url = rest_base(client) .. "/storage/upload/initiate?storage_type=fal-cdn-v3",
    json = { file_name = desc.name, content_type = desc.mime },
    idempotent = true,
  }
  if not resp then return nil, err end
  local j = tab(resp.json) or {}
  local upload_url, file_url = str(j.upload_url), str(j.file_url)
  if not url.is_url(upload_url) or not file_url then
    return nil, common.provider_error("fal", "upload: initiate returned no upload_url/file_url")
  end
  local put, perr = images.put(client, upload_url, desc)
  if not put then return nil, perr end
  return file_url
end

-- The three URLs of a request, built from owner/app (used only when fal did not send them).
local function build_urls(base, model, id)
  local root = url.trim_slash(base) .. "/" .. fal.app_id(model) .. "/requests/" .. url.encode(id)
  return root .. "/status", root, root .. "/cancel"
end

--- Reads a status answer ({status: IN_QUEUE | IN_PROGRESS | COMPLETED, queue_position,
-- logs}) into an observation; the second value is true when the result must be read next
-- (COMPLETED, or the FAILED/ERROR a third-party schema lists: the result tells what
-- happened). nil when the answer is not a status.
function fal.read(j)
  j = tab(j)
  if not j then return nil end
  local obs = { raw = j, logs = tab(j.logs) }
  local status = str(j.status)
  if status == "IN_QUEUE" then
    obs.status = "queued"
    obs.queue_position = common.number(j.queue_position)
    return obs
  end
  if status == "COMPLETED" or status == "FAILED" or status == "ERROR" then
    obs.status = "running"
    return obs, true
  end
  if status == "CANCELED" or status == "CANCELLED" then
    obs.status = "canceled"
    return obs
  end
  -- IN_PROGRESS, or unknown: not terminal; wait's timeout bounds it.
  obs.status = "running"
  return obs
end

-- A failure that fal stated: canceled when its error type says so, moderated for a policy
-- refusal, timeout for the end of our own start timeout, else failed.
local function failure(status_body, code, message, http_status, kind)
  code = str(status_body.error_type) or code
  message = str(status_body.error) or message
  kind = kind or "failed"
  if code and MODERATED[code] then kind = "moderated" end
  local status = "failed"
  if type(code) == "string" and code:find("cancel", 1, true) then status = "canceled" end
  return { status = status, error = { kind = kind, code = code, status = http_status,
    message = message or "no detail" } }
end

--- Reads a result answer (decoded JSON, its HTTP status and headers, the status body that
-- said COMPLETED) into an observation. A video is success; fal's own statement of failure
-- (an error answer whose JSON carries detail or an error type, or the 504 of our start
-- timeout) fails the task. Anything else (a gateway page, a body that is not fal's, a 200
-- without a video) is no verdict: nil, and the reason, so the poll reports a retryable
-- error and the task stays as it is (the video may exist: never pay twice for it).
function fal.read_result(j, http_status, status_body, headers)
  status_body = status_body or {}
  j = tab(j)
  local video = j and tab(j.video)
  local video_url = video and str(video.url)
  if video_url and http_status < 400 then
    return { status = "succeeded", video_url = video_url, extra = { result = j } }
  end
  local pe = fal.parse_error({ json = j, headers = headers or {}, status = http_status })
  if pe.kind == "timeout" then
    return failure(status_body, pe.code or "request_timeout",
      pe.message or "the request did not start within start_timeout", http_status, "timeout")
  end
  -- fal's statement: its JSON error body, or the error the COMPLETED status carried.
  local stated = (j and (j.detail ~= nil or str(j.error_type) or str(j.type)))
    or str(status_body.error_type) or str(status_body.error)
  if http_status >= 400 and http_status < 500 and stated then
    local obs = failure(status_body, pe.code, pe.message, http_status)
    obs.extra = { result = j }
    return obs
  end
  return nil, string.format("the result could not be read (HTTP %d%s)", http_status,
    j and ", no video and no error" or ", not fal's JSON")
end

--- Reads a fal_webhook body ({request_id, status: "OK" | "ERROR", payload, error}) ->
-- observation, request id: OK with a video is success; ERROR with fal's error is the
-- failure it states (its payload is the result's error body).
function fal.read_callback(j)
  j = tab(j)
  local id = j and common.id(j.request_id)
  if not id then return nil end
  local payload = tab(j.payload)
  if j.status == "OK" then
    local obs = fal.read_result(payload, 200, {})
    if obs then obs.raw = j end
    return obs, id
  end
  local pe = payload and payload.detail ~= nil and fal.parse_error({ json = payload, headers = {} })
    or {}
  local obs = failure({}, pe.code, pe.message or str(j.error), nil)
  obs.raw = j
  return obs, id
end

--- Submits to the queue: POST {base}/{model}[?fal_webhook=], headers for priority, start
-- timeout and runner hint.
function fal.submit(client, p)
  local image, ierr = images.field(client, "fal", p.image, fal.upload)
  if not image then return nil, ierr end
  local body = { prompt = p.prompt, image_url = image }
  if p.seed ~= nil then body.seed = p.seed end
  if p.movement_amplitude ~= nil then body.movement_amplitude = p.movement_amplitude end
  local path = "/" .. p.model
  if p.fal_webhook then path = path .. "?fal_webhook=" .. url.encode(p.fal_webhook) end
  local headers = {}
  if p.priority then headers["X-Fal-Queue-Priority"] = p.priority end
  if p.start_timeout then headers["X-Fal-Request-Timeout"] = tostring(p.start_timeout) end
  if p.hint then headers["X-Fal-Runner-Hint"] = p.hint end
  local resp, err = client:request{
    method = "POST", path = path, headers = headers, idempotent = false,
    -- Encoded once a connection slot is granted (vidu.http): a queued submit holds no body.
    json = function() return body end,
    elide_data_uris = common.ECHO_MAX, -- an inline image echoed back is cut in C
  }
  if not resp then return nil, err end
  local j = tab(resp.json)
  if not j then return nil, common.uncertain("fal", "the submit answer is not JSON", resp) end
  local id = common.id(j.request_id)
  if not id then
    return nil, common.uncertain("fal", "the submit answer has no request_id", resp)
  end
  local s, r, c = build_urls(client.base_url, p.model, id)
  -- fal's URLs as given, unless they point away from fal's hosts (the key goes with them).
  local function own(u, built) return client:is_own(u) and u or built end
  local handle = {
    id = id, model = p.model,
    status_url = own(j.status_url, s), response_url = own(j.response_url, r),
    cancel_url = own(j.cancel_url, c),
  }
  return handle, { status = "queued", raw = j, queue_position = common.number(j.queue_position) }
end

-- Reads the result of a COMPLETED request (see fal.read_result): transport trouble, after
-- the client's retries, is a retryable error, never the model's failure.
local function poll_result(client, task, status_body)
  local resp, err = client:request{
    method = "GET", url = task.response_url, idempotent = true, read_errors = true,
  }
  if not resp then return nil, err end
  local obs, why = fal.read_result(resp.json, resp.status, status_body, resp.headers)
  if not obs then
    return nil, common.provider_error("fal", why, { status = resp.status, retryable = true,
      task_id = task.id })
  end
  return obs
end

--- Polls {status_url}?logs=1 (202 pending, 200 completed); on COMPLETED reads the result.
function fal.poll(client, task)
  local resp, err = client:request{
    method = "GET", url = url.add_query(task.status_url, "logs=1"), idempotent = true,
  }
  if not resp then return nil, err end
  local obs, completed = fal.read(resp.json)
  if not obs then
    return nil, common.bad_answer("fal", "the status answer is not JSON", resp, task)
  end
  if not completed then return obs end
  local final, ferr = poll_result(client, task, obs.raw)
  if not final then return nil, ferr end
  final.raw, final.logs = obs.raw, obs.logs
  return final
end

-- A stream silent this long (no byte, not even a comment or a repeat the engine dropped)
-- is given up: the task polls. A field, so that a spec can shorten it.
fal.stream_idle = 30
-- Bytes an event of the stream may reach (fal sends every log line again in each event).
local STREAM_EVENT_MAX = 1024 * 1024

-- The stream URL of a status URL: {status_url}/stream?logs=1 (a query stays at the end).
local function stream_url(status_url)
  local path, query = status_url:match("^([^?#]*)(.*)$")
  return url.add_query(url.trim_slash(path) .. "/stream" .. query, "logs=1")
end

--- Follows the task on fal's status stream, GET {status_url}/stream?logs=1 (server-sent
-- events, each event's data a status body as poll reads it), handing every reading to
-- `on_obs` (the task applies it). On COMPLETED the stream is closed and the result read
-- once, as poll does. `deadline` (the scheduler's clock) cuts the stream; `events` (scheduler
-- events) interrupt it. Returns how it ended:
--   "finished"   a terminal observation was handed over (or the result's, after COMPLETED)
--   "refused"    not a 200 text/event-stream answer: poll this task instead
--   "broken"     the stream failed, went silent, or ended without a terminal status; err
--   "deadline" | "event"
function fal.follow(client, task, on_obs, deadline, events)
  -- The engine drops an event that repeats the last one byte for byte before any Lua sees
  -- it (skip_repeats): while a task runs, that is nearly every event.
  local stream, err = client:stream{ url = stream_url(task.status_url), deadline = deadline,
    max_response = STREAM_EVENT_MAX, skip_repeats = true }
  if not stream then return "broken", err end
  local parser = sse.parser(STREAM_EVENT_MAX)
  local sched = client.scheduler
  local checked, last, last_bytes = false, nil, nil
  local function accepted(status, headers)
    local ct = headers and headers["content-type"] or ""
    return status == 200 and ct:find("text/event-stream", 1, true) ~= nil
  end
  -- Reads events from bytes; returns a way of ending, or nil to read on.
  local function consume(bytes)
    -- The very bytes of the last read again, whole events both times: the stream repeating
    -- its status, which says nothing new (the usual case while a task runs): not parsed.
    if bytes == last_bytes and parser:idle() then return nil end
    local evs, perr = parser:feed(bytes)
    if not evs then return "broken", common.provider_error("fal", perr, { retryable = true }) end
    last_bytes = parser:idle() and bytes or nil
    for i = 1, #evs do
      local data = evs[i].data
      -- An event that repeats the last one says nothing new (the stream may send the status
      -- again and again while nothing changes): not even decoded.
      local obs, completed
      if data ~= last then
        last = data
        obs, completed = fal.read(json.decode(data))
      end
      if obs then
        if completed then
          stream:close()
          local final, ferr = poll_result(client, task, obs.raw)
          if not final then return "broken", ferr end
          final.raw, final.logs = obs.raw, obs.logs
          on_obs(final)
          return "finished"
        end
        on_obs(obs)
        if obs.status == "canceled" then return "finished" end
      end
    end
    return nil
  end
  local how, why
  -- The idle limit is checked when it falls due, not re-armed for every event: one timer.
  local last_data = sched:time()
  local idle = fal.stream_idle
  local idle_at = last_data + idle
  local seen = 0 -- bytes received when the idle limit was last checked (repeats included)
  while true do
    local what, a, b = stream:read((deadline and deadline < idle_at) and deadline or idle_at,
      events)
    if what == "data" then last_data, seen = sched:time(), stream:received() or seen end
    if what == "data" then
      if not checked then
        checked = true
        if not accepted(b.status, b.headers) then how = "refused" break end
      end
      how, why = consume(a)
      if how then break end
    elseif what == "done" then
      if not a.ok then
        how, why = "broken", common.provider_error("fal", "the status stream failed: " ..
          tostring(a.message or a.error), { retryable = true })
        break
      end
      if not checked and not accepted(a.status, a.headers) then how = "refused" break end
      how, why = consume(b or "")
      if not how then
        how, why = "broken", common.provider_error("fal",
          "the status stream ended without a final status", { retryable = true })
      end
      break
    elseif what == "event" then
      how = "event" break
    elseif deadline and sched:time() >= deadline then
      how = "deadline" break
    elseif sched:time() - last_data < idle then
      idle_at = last_data + idle
    elseif (stream:received() or 0) > seen then
      -- Only repeats arrived (dropped by the engine): the stream is alive.
      seen = stream:received()
      last_data = sched:time()
      idle_at = last_data + idle
    else
      how, why = "broken", common.provider_error("fal", string.format(
        "the status stream sent nothing for %g s", idle), { retryable = true })
      break
    end
  end
  stream:close()
  return how, why
end

--- Cancels with PUT {cancel_url}; any 2xx means fal accepted (it may still finish a request
-- that was already running; it then ends COMPLETED with an error, which reads as canceled).
function fal.cancel(client, task)
  local resp, err = client:request{ method = "PUT", url = task.cancel_url, idempotent = true }
  if not resp then return nil, common.with_task_id(err, task.id) end
  return true
end

--- Fills in a handle: the model (default the q1 model) gives owner/app, which is all the
-- status/result/cancel URLs use.
function fal.attach(client, handle)
  handle.model = handle.model or fal.default_model
  local s, r, c = build_urls(client.base_url, handle.model, handle.id)
  handle.status_url = handle.status_url or s
  handle.response_url = handle.response_url or r
  handle.cancel_url = handle.cancel_url or c
  return handle
end

return fal
