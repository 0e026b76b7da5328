--- fal.ai's queue API (queue.fal.run) for fal-ai/vidu/q1/image-to-video and other models.
--
-- What fal asks of a client (../shared/providers.md, section A):
-- * submit to the full model id, but status/result/cancel live under owner/app only: use the
--   status_url, response_url and cancel_url that submit returns, never rebuild them from the
--   full id (we build them from owner/app only to re-attach by id);
-- * status answers 202 while pending and 200 when COMPLETED, and a COMPLETED status can
--   still be a failure: the result is always read and its HTTP status checked;
-- * local images go through fal's storage (initiate, then PUT) by default.
local errors = require("vidu.errors")
local validate = require("vidu.validate")
local images = require("vidu.images")
local common = require("vidu.providers.common")

local str, tab = common.str, common.tab

local fal = {
  name = "fal",
  env_key = "FAL_KEY",
  default_base_url = "https://queue.fal.run",
  -- fal's REST host (storage uploads). A base_url given to the client replaces it too, so one
  -- emulator URL serves every host.
  rest_base_url = "https://rest.fal.ai",
  default_model = "fal-ai/vidu/q1/image-to-video",
  -- fal reports queue position and logs while waiting; poll briskly at first.
  poll_defaults = { first = 1, max = 10, factor = 1.5 },
}

-- App namespaces that add one path segment before owner/app (fal's APP_NAMESPACES).
local NAMESPACES = { workflows = true, comfy = true }

-- Error types that mean content moderation (fal's 422 detail[].type for policy refusals).
local MODERATED = { content_policy_violation = true }

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
    out.code = str(j.error_type) or out.code
    if not out.message then out.message = str(j.error) or str(j.message) end
  end
  out.code = out.code or str(h["x-fal-error-type"])
  if not out.message then out.message = common.excerpt(resp and resp.body) end
  local retry_hdr = h["x-fal-retryable"] or h["x-fal-needs-retry"]
  if retry_hdr then out.retryable = (retry_hdr == "true" or retry_hdr == "1") end
  -- A 504 of our own start_timeout (X-Fal-Request-Timeout) is final, not an outage.
  if h["x-fal-request-timeout-type"] == "user" then
    out.retryable = false
    out.kind = "timeout"
  end
  if out.code and MODERATED[out.code] then out.kind = "moderated" end
  return out
end

--- Validates submit parameters (no network I/O).
function fal.check(_, params)
  return validate.check("fal", params)
end

-- The REST host: fal's own, unless the client was pointed somewhere else (the emulator).
local function rest_base(client)
  local base = client.base_url
  if base and (client.custom_base_url or common.trim_slash(base) ~= fal.default_base_url) then
    return common.trim_slash(base)
  end
  return fal.rest_base_url
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
  if not common.is_http_url(upload_url) or not file_url then
    return nil, common.provider_error("fal", "upload: initiate returned no upload_url/file_url")
  end
  local put, perr = images.put(client, upload_url, desc)
  if not put then return nil, perr end
  return file_url
end

-- The three URLs of a request, built from owner/app (used only when fal did not send them).
local function build_urls(base, model, id)
  local root = common.trim_slash(base) .. "/" .. fal.app_id(model) .. "/requests/"
    .. common.urlencode(id)
  return root .. "/status", root, root .. "/cancel"
end

--- Submits to the queue: POST {base}/{model}[?fal_webhook=], headers for priority, start
-- timeout and runner hint.
function fal.submit(client, p)
  local image, ierr = images.materialize(client, "fal", p.image, fal.upload)
  if not image then return nil, ierr end
  local body = { prompt = p.prompt, image_url = image }
  if p.seed ~= nil then body.seed = p.seed end
  if p.movement_amplitude ~= nil then body.movement_amplitude = p.movement_amplitude end
  local path = "/" .. p.model
  if p.fal_webhook then path = path .. "?fal_webhook=" .. common.urlencode(p.fal_webhook) end
  local headers = {}
  if p.priority then headers["X-Fal-Queue-Priority"] = p.priority end
  if p.start_timeout then headers["X-Fal-Request-Timeout"] = tostring(p.start_timeout) end
  if p.hint then headers["X-Fal-Runner-Hint"] = p.hint end
  local resp, err = client:request{
    method = "POST", path = path, json = body, headers = headers, idempotent = false,
  }
  if not resp then return nil, common.refine(err, MODERATED) end
  local j = tab(resp.json)
  if not j then return nil, common.uncertain("fal", "the submit answer is not JSON", resp) end
  local id = common.id(j.request_id)
  if not id then
    return nil, common.uncertain("fal", "the submit answer has no request_id", resp)
  end
  local s, r, c = build_urls(client.base_url or fal.default_base_url, p.model, id)
  local fields = {
    id = id, status = "queued", raw = j, model = p.model,
    status_url = common.is_http_url(j.status_url) and j.status_url or s,
    response_url = common.is_http_url(j.response_url) and j.response_url or r,
    cancel_url = common.is_http_url(j.cancel_url) and j.cancel_url or c,
    queue_position = common.number(j.queue_position),
  }
  return fields
end

-- Marks the task failed with an error built from the result's HTTP error (or the status's).
-- A failure after our own cancel (or one whose error type says so) is a cancellation.
local function fail(task, spec)
  local code = spec.code
  if task.cancel_requested or (type(code) == "string" and code:find("cancel", 1, true)) then
    task.status = "canceled"
    task.error = errors.new{ kind = "canceled", provider = "fal", status = spec.status,
      code = code, task_id = task.id, message = "the request was canceled" }
    return
  end
  local kind = "failed"
  if spec.kind == "moderated" or (spec.code and MODERATED[spec.code]) then kind = "moderated" end
  task.status = "failed"
  task.error = errors.new{
    kind = kind, provider = "fal", status = spec.status, code = spec.code,
    task_id = task.id, message = "generation failed: " .. tostring(spec.message or "no detail"),
  }
end

-- Reads the result of a COMPLETED request. A 2xx with a video is success; an HTTP error from
-- the result (after the client's retries) is the model's failure; a network error is ours.
local function read_result(client, task, status_body)
  local resp, err = client:request{ method = "GET", url = task.response_url, idempotent = true }
  if not resp then
    local http_failure = err.status and err.kind ~= "auth" and err.kind ~= "rate_limited"
    if not http_failure then return nil, err end
    -- The status's error_type is more specific than the result's HTTP error.
    fail(task, { kind = err.kind, status = err.status,
      code = str(status_body.error_type) or err.code,
      message = str(status_body.error) or err.message })
    return true
  end
  local j = tab(resp.json)
  task.result = j
  local video = j and tab(j.video)
  local url = video and str(video.url)
  if url then
    task.video_url = url
    task.status = "succeeded"
    return true
  end
  local pe = fal.parse_error(resp)
  fail(task, {
    code = str(status_body.error_type) or pe.code,
    message = str(status_body.error) or pe.message or "the result has no video.url",
  })
  return true
end

--- Polls {status_url}?logs=1 (202 pending, 200 completed); on COMPLETED reads the result.
local function poll_task(client, task)
  local resp, err = client:request{
    method = "GET", url = common.add_query(task.status_url, "logs=1"), idempotent = true,
  }
  if not resp then return nil, err end
  local j = tab(resp.json)
  if not j then
    return nil, common.provider_error("fal", "the status answer is not JSON",
      { status = resp.status, retryable = true, task_id = task.id })
  end
  task.raw = j
  if tab(j.logs) then task.logs = j.logs end
  local status = str(j.status)
  if status == "IN_QUEUE" then
    task.status = "queued"
    task.queue_position = common.number(j.queue_position)
    return true
  end
  task.queue_position = nil
  if status == "IN_PROGRESS" then
    task.status = "running"
    return true
  end
  if status == "COMPLETED" or status == "FAILED" or status == "ERROR" then
    -- FAILED/ERROR are not in fal's types (a third-party schema lists FAILED): read the
    -- result either way, it tells what happened.
    return read_result(client, task, j)
  end
  if status == "CANCELED" or status == "CANCELLED" then
    task.status = "canceled"
    task.error = errors.new{ kind = "canceled", provider = "fal", task_id = task.id,
      message = "the request was canceled" }
    return true
  end
  -- Unknown: not terminal; wait's timeout bounds it.
  task.status = "running"
  return true
end

--- Cancels with PUT {cancel_url}; any 2xx means fal accepted (it may still finish a request
-- that was already running).
function fal.cancel(client, task)
  local url = task.cancel_url
  if not url then
    local _, _, c = build_urls(client.base_url or fal.default_base_url,
      task.model or fal.default_model, task.id)
    url = c
  end
  local resp, err = client:request{ method = "PUT", url = url, idempotent = true }
  if not resp then return nil, common.with_task_id(err, task.id) end
  -- The request ends COMPLETED with an error; this tells poll it was our cancel.
  task.cancel_requested = true
  return true
end

--- Re-attaches to a request by id. opts.model (default the q1 model) gives owner/app, which
-- is all the status/result/cancel URLs use.
function fal.attach(client, id, opts)
  common.check_attach("fal", id, opts, { model = true })
  local model = opts and opts.model or fal.default_model
  if type(model) ~= "string" then error("vidu fal: option 'model' must be a string", 0) end
  local s, r, c = build_urls(client.base_url or fal.default_base_url, model, id)
  return { id = id, status = "queued", model = model, status_url = s, response_url = r,
    cancel_url = c }
end

fal.poll = poll_task

return fal
