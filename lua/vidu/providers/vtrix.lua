--- Vtrix (cloud.vtrix.ai, run by SeaArt) for viduq1_img2video.
--
-- Bearer auth; the body wraps the model's fields as {"model": ..., "input": [{"params": {...}}]}
-- (the CLI and real user code; whether a flat body works is unconfirmed). The submit answer
-- is a task object whose id is `id` (some pages say `task_id`: both are read). Statuses are
-- in_progress|pending|processing|completed|failed; anything else is taken as still running.
-- The video is at output[0].content[0].url and usage.cost (USD, a string) becomes task.cost.
-- No upload API (local images go inline, the POST body must stay under 20 MB) and no cancel.
local errors = require("vidu.errors")
local validate = require("vidu.validate")
local images = require("vidu.images")
local common = require("vidu.providers.common")

local str, tab, first = common.str, common.tab, common.first

local vtrix = {
  name = "vtrix",
  env_key = "VTRIX_API_KEY",
  default_base_url = "https://cloud.vtrix.ai",
  poll_defaults = { first = 2, max = 15, factor = 1.5 },
  -- The whole POST body limit (doc.vtrix.ai: "must not exceed 20MB"), decimal MB.
  max_body = 20 * 1000 * 1000,
}

local STATES = {
  pending = "queued", queued = "queued",
  in_progress = "running", processing = "running", running = "running",
  completed = "succeeded", succeeded = "succeeded",
  failed = "failed",
  canceled = "canceled", cancelled = "canceled",
}

-- The model's error codes (seed page). The codes are not in any other public source.
local CODES = {
  [8008003001] = "missing image",
  [8008003002] = "invalid parameter value",
  [8008003003] = "invalid style",
  [8008003004] = "invalid image",
  [8008003098] = "generation failed",
  [8008003099] = "provider unavailable",
}

--- The Authorization header value.
function vtrix.auth_header(key)
  return "Bearer " .. key
end

--- Reads a Vtrix error body: {"message": ...}, {"error": "..."} or {"error": {code, message}}.
function vtrix.parse_error(resp)
  local out = {}
  local j = tab(resp and resp.json)
  if j then
    local e = j.error
    if tab(e) then
      out.code = e.code
      out.message = str(e.message) or str(e.error_message)
    else
      out.message = str(e)
    end
    out.message = out.message or str(j.message) or str(j.msg)
    if out.code == nil and j.code ~= nil and j.code ~= 0 and j.code ~= 200 then
      out.code = j.code
    end
  end
  if not out.message then out.message = common.excerpt(resp and resp.body) end
  return out
end

-- The fields that go into input[0].params as given (validated).
local PARAMS = {
  "prompt", "audio", "voice_id", "is_rec", "bgm", "duration", "seed", "resolution",
  "movement_amplitude", "payload", "off_peak", "watermark", "wm_position", "wm_url",
  "callback_url",
}

-- Estimated body size in bytes: the image as base64 plus the text fields plus slack for
-- the JSON around them.
local function estimate_body(p)
  local n = 4096
  local img = p.image
  if img.route == "inline" then
    n = n + 4 * math.ceil(img.size / 3) + 32
  elseif img.url then
    n = n + #img.url
  end
  for _, k in ipairs({ "prompt", "payload", "voice_id", "wm_url", "callback_url" }) do
    if type(p[k]) == "string" then n = n + #p[k] * 2 end -- JSON escaping can grow text
  end
  return n
end

--- Validates submit parameters (no network I/O), including the 20 MB body limit.
function vtrix.check(_, params)
  local p, err = validate.check("vtrix", params)
  if not p then return nil, err end
  local size = estimate_body(p)
  if size > vtrix.max_body then
    return validate.invalid("vtrix", "body", vtrix.max_body, string.format(
      "the request would be about %.1f MB, Vtrix takes at most 20 MB "
        .. "(send the image as an http(s) URL)", size / 1e6))
  end
  return p
end

-- The error of a failed task: error{code, message|error_message}.
local function task_error(j, id)
  local e = tab(j.error) or {}
  local code = e.code
  if code == 0 then code = nil end
  local msg = str(e.message) or str(e.error_message) or str(j.error)
  local known = type(code) == "number" and CODES[code]
  -- Vtrix documents no moderation code: a refusal arrives as 8008003098 "generation failed"
  -- whose text names the moderation, so the text decides.
  local kind = "failed"
  local lower = (msg or ""):lower()
  if lower:find("moderat", 1, true) or lower:find("nsfw", 1, true)
    or lower:find("sensitive", 1, true) or lower:find("content policy", 1, true) then
    kind = "moderated"
  end
  return errors.new{
    kind = kind, provider = "vtrix", code = code, task_id = id,
    retryable = code == 8008003099 or nil,
    message = "generation failed" .. (known and (" (" .. known .. ")") or "")
      .. (msg and (": " .. msg) or ""),
  }
end

-- Copies a task object onto the task.
local function apply(task, j)
  task.raw = j
  local o = tab(first(j.output))
  local c = o and tab(first(o.content))
  if c and str(c.url) then task.video_url = c.url end
  local usage = tab(j.usage)
  if usage and usage.cost ~= nil then task.cost = common.number(usage.cost) end
  if type(j.progress) == "number" then task.progress = j.progress end
  local status = STATES[str(j.status) or ""]
  if status == "failed" then
    task.status = "failed"
    task.error = task_error(j, task.id)
    return
  end
  if status == "canceled" then
    task.status = "canceled"
    task.error = errors.new{ kind = "canceled", provider = "vtrix", task_id = task.id,
      message = "the task was canceled" }
    return
  end
  if status == "succeeded" and not task.video_url then
    task.status = "failed"
    task.error = common.provider_error("vtrix", "completed but output[0].content[0].url is missing",
      { task_id = task.id })
    return
  end
  task.status = status or (task.status == "queued" and "queued" or "running")
end

-- Some gateways wrap the task in {"data": {...}}; read either.
local function unwrap(j)
  if j and tab(j.data) and (j.id == nil and j.task_id == nil) then return j.data end
  return j
end

--- Submits: POST /model/v1/generation with {"model":..., "input":[{"params":{...}}]}.
function vtrix.submit(client, p)
  local image, ierr = images.materialize(client, "vtrix", p.image, nil)
  if not image then return nil, ierr end
  local params = { images = { image } }
  for _, k in ipairs(PARAMS) do
    if p[k] ~= nil then params[k] = p[k] end
  end
  local resp, err = client:request{
    method = "POST", path = "/model/v1/generation", idempotent = false,
    json = { model = p.model, input = { { params = params } } },
  }
  if not resp then return nil, err end
  local j = unwrap(tab(resp.json))
  if not j then return nil, common.uncertain("vtrix", "the submit answer is not JSON", resp) end
  local id = common.id(j.id) or common.id(j.task_id)
  if not id then
    local pe = vtrix.parse_error(resp)
    if pe.code ~= nil or (tab(resp.json) and resp.json.error ~= nil) then
      return nil, common.provider_error("vtrix", pe.message or "submit refused",
        { code = pe.code, status = resp.status })
    end
    return nil, common.uncertain("vtrix", "the submit answer has no id", resp)
  end
  local fields = { id = id, status = "queued", model = p.model }
  apply(fields, j)
  return fields
end

--- Polls GET /model/v1/generation/task/{id}.
local function poll_task(client, task)
  local resp, err = client:request{
    method = "GET", path = "/model/v1/generation/task/" .. common.urlencode(task.id),
    idempotent = true,
  }
  if not resp then return nil, err end
  local j = unwrap(tab(resp.json))
  if not j then
    return nil, common.provider_error("vtrix", "the task answer is not JSON",
      { status = resp.status, retryable = true, task_id = task.id })
  end
  apply(task, j)
  return true
end

-- Re-attaches to a task by id.
vtrix.attach = common.attach_by_id("vtrix")

-- No cancel: Vtrix documents none.
vtrix.cancel = nil

vtrix.poll = poll_task

return vtrix
