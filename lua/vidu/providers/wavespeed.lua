--- WaveSpeedAI API v3 (api.wavespeed.ai) for vidu/image-to-video-2.0.
--
-- Bearer auth, a flat body, answers wrapped in {code, message, data}. Polling prefers the
-- data.urls.get the server returns (it may or may not end in /result). Optional sync mode
-- (`sync = true` sends enable_sync_mode): the submit blocks until the result is ready; when
-- the answer is not final (WaveSpeed's "Sync mode timed out", code 5004) the task keeps
-- running and we fall back to polling. No cancel is documented.
local errors = require("vidu.errors")
local validate = require("vidu.validate")
local images = require("vidu.images")
local common = require("vidu.providers.common")

local str, tab, first = common.str, common.tab, common.first

local wavespeed = {
  name = "wavespeed",
  env_key = "WAVESPEED_API_KEY",
  default_base_url = "https://api.wavespeed.ai",
  poll_defaults = { first = 2, max = 15, factor = 1.5 },
  -- How long a sync-mode submit may block before we give up on the answer (seconds).
  sync_timeout = 600,
}

local STATES = {
  created = "queued", pending = "queued", queued = "queued",
  processing = "running",
  completed = "succeeded",
  failed = "failed", timeout = "failed",
  cancelled = "canceled", canceled = "canceled",
}

-- Task error codes (wavespeed.ai/docs/error-codes): 1200 is content moderation; 5xxx are
-- the provider's own trouble and worth retrying with a new task.
local MODERATED_CODE = 1200

--- The Authorization header value.
function wavespeed.auth_header(key)
  return "Bearer " .. key
end

--- Reads WaveSpeed's error envelope {code, message} (or {error}, or text).
function wavespeed.parse_error(resp)
  local out = {}
  local j = tab(resp and resp.json)
  if j then
    if j.code ~= nil and j.code ~= 200 then out.code = j.code end
    out.message = str(j.message) or str(j.error) or str(j.detail)
    local d = tab(j.data)
    if d and not out.message then out.message = str(d.error) end
  end
  if not out.message then out.message = common.excerpt(resp and resp.body) end
  return out
end

--- Validates submit parameters (no network I/O).
function wavespeed.check(_, params)
  return validate.check("wavespeed", params)
end

--- Uploads a local image: POST /api/v3/media/uploads {filename, size, content_type}, PUT the
-- bytes to data.upload.url with data.upload.headers (no Authorization), use download_url.
function wavespeed.upload(client, desc)
  local resp, err = client:request{
    method = "POST", path = "/api/v3/media/uploads", idempotent = true,
    json = { filename = desc.name, size = desc.size, content_type = desc.mime },
  }
  if not resp then return nil, err end
  local j = tab(resp.json) or {}
  local d = tab(j.data) or {}
  local up = tab(d.upload) or {}
  local url, download = str(up.url), str(d.download_url)
  if (j.code ~= nil and j.code ~= 200) or not common.is_http_url(url) or not download then
    return nil, common.provider_error("wavespeed", "upload: "
      .. (str(j.message) or "the answer has no upload.url/download_url"),
      { code = j.code ~= 200 and j.code or nil })
  end
  local headers = {}
  for k, v in pairs(tab(up.headers) or {}) do
    if type(k) == "string" and type(v) == "string" then headers[k] = v end
  end
  local put, perr = images.put(client, url, desc, headers)
  if not put then return nil, perr end
  return download
end

-- The error of a task that ended failed/timeout.
local function task_error(d, id)
  local code = d.code
  if code == 0 then code = nil end
  local msg = str(d.error)
  local kind = "failed"
  if code == MODERATED_CODE then kind = "moderated" end
  if d.status == "timeout" then
    code = code or "timeout"
    msg = msg or "the provider timed the task out"
  end
  return errors.new{
    kind = kind, provider = "wavespeed", code = code, task_id = id,
    retryable = type(code) == "number" and code >= 5000 or nil,
    message = (kind == "moderated" and "content moderation refused the task" or "generation failed")
      .. (msg and (": " .. msg) or ""),
  }
end

-- Copies a prediction (data of the envelope) onto the task.
local function apply(task, d)
  task.raw = d
  local urls = tab(d.urls)
  if urls and common.is_http_url(urls.get) then task.get_url = urls.get end
  local out = first(d.outputs)
  if str(out) then task.video_url = out end
  local status = STATES[str(d.status) or ""]
  -- Sync mode that ran out of time answers "processing" with an error (or code 5004): the
  -- task goes on, so this is not a failure.
  if status == "failed" or status == "canceled" then
    task.error = task_error(d, task.id)
    if status == "canceled" then
      task.error = errors.new{ kind = "canceled", provider = "wavespeed", task_id = task.id,
        message = "the task was cancelled" }
    end
    task.status = status
    return
  end
  if status == "succeeded" and not task.video_url then
    task.status = "failed"
    task.error = common.provider_error("wavespeed", "completed but outputs[] is empty",
      { task_id = task.id })
    return
  end
  task.status = status or (task.status == "queued" and "queued" or "running")
end

--- Submits: POST /api/v3/{model}[?webhook=], flat body; with sync = true the answer may
-- already hold the video.
function wavespeed.submit(client, p)
  local image, ierr = images.materialize(client, "wavespeed", p.image, wavespeed.upload)
  if not image then return nil, ierr end
  local body = { image = image, prompt = p.prompt }
  for _, k in ipairs({ "duration", "movement_amplitude", "seed" }) do
    if p[k] ~= nil then body[k] = p[k] end
  end
  if p.sync then body.enable_sync_mode = true end
  local path = "/api/v3/" .. p.model
  if p.webhook then path = path .. "?webhook=" .. common.urlencode(p.webhook) end
  local resp, err = client:request{
    method = "POST", path = path, json = body, idempotent = false,
    timeout = p.sync and wavespeed.sync_timeout or nil,
  }
  if not resp then return nil, err end
  local j = tab(resp.json)
  if not j then return nil, common.uncertain("wavespeed", "the submit answer is not JSON", resp) end
  local d = tab(j.data)
  local id = d and common.id(d.id)
  if not id then
    if j.code ~= nil and j.code ~= 200 then
      -- An error envelope inside a 2xx: WaveSpeed refused the task, none was created.
      return nil, common.provider_error("wavespeed", str(j.message) or "submit refused",
        { code = j.code, status = resp.status })
    end
    return nil, common.uncertain("wavespeed", "the submit answer has no data.id", resp)
  end
  local fields = { id = id, status = "queued", model = p.model, sync = p.sync or nil }
  apply(fields, d)
  return fields
end

--- Polls urls.get (or /api/v3/predictions/{id}/result).
local function poll_task(client, task)
  local req = { method = "GET", idempotent = true }
  if task.get_url then
    req.url = task.get_url
  else
    req.path = "/api/v3/predictions/" .. common.urlencode(task.id) .. "/result"
  end
  local resp, err = client:request(req)
  if not resp then return nil, err end
  local j = tab(resp.json)
  local d = j and tab(j.data)
  if not d then
    return nil, common.provider_error("wavespeed", "the result answer has no data"
      .. (j and str(j.message) and (": " .. j.message) or ""),
      { status = resp.status, retryable = true, task_id = task.id,
        code = j and j.code ~= 200 and j.code or nil })
  end
  apply(task, d)
  return true
end

-- Re-attaches to a prediction by id.
wavespeed.attach = common.attach_by_id("wavespeed")

-- No cancel: WaveSpeed documents none.
wavespeed.cancel = nil

wavespeed.poll = poll_task

return wavespeed
