--- The Vidu API ("ent/v2"), shared by the official provider and Vidu-compatible relays.
--
-- Relays pass Vidu's own body and answers through (cus_priority, credits, state, ...), so one
-- implementation serves both; what differs is configuration: the auth scheme (Token for
-- Vidu, Bearer for relays), the path prefix (/ent/v2 or /vidu/v2), the upload API (Vidu
-- only) and cancel (Vidu only; no relay documents one).
local errors = require("vidu.errors")
local json = require("vidu.json")
local validate = require("vidu.validate")
local images = require("vidu.images")
local common = require("vidu.providers.common")

local str, tab, first = common.str, common.tab, common.first

local vidu_api = {}

-- Vidu's task states (platform.vidu.com/docs/get-generation) to ours.
local STATES = {
  created = "queued", queueing = "queued", scheduled = "queued",
  processing = "running",
  success = "succeeded",
  failed = "failed",
}

-- err_code / reason values that mean content moderation refused the input or the output
-- (platform.vidu.com/docs/error-code; TaskPromptPolicyViolation is on the CN page).
local MODERATED = {
  TaskPromptPolicyViolation = true, CreationPolicyViolation = true, AuditSubmitIllegal = true,
}
vidu_api.MODERATED = MODERATED

-- err_code values that mean the task was canceled rather than failed.
local CANCELED = { UserCancelled = true, Canceled = true }

-- Body fields sent as given (already validated); meta_data may be a table (sent as JSON text).
local BODY_FIELDS = {
  "prompt", "duration", "seed", "resolution", "movement_amplitude", "bgm", "payload",
  "off_peak", "callback_url", "is_rec", "audio", "voice_id", "watermark", "wm_position",
  "wm_url", "meta_data",
}

--- Reads a Vidu error body: {code, reason, message, metadata{trace_id}}, or the
-- {"error":{message,type,code}} wrapper of new-api style relays, or plain text.
function vidu_api.parse_error(resp)
  local j = tab(resp and resp.json)
  local out = {}
  if j then
    local e = tab(j.error)
    if e then
      out.code = str(e.code) or (type(e.code) == "number" and e.code) or str(e.type)
      out.message = str(e.message)
    else
      out.code = str(j.reason) or str(j.err_code) or (type(j.code) == "string" and j.code or nil)
      out.message = str(j.message)
      local meta = tab(j.metadata)
      out.request_id = meta and str(meta.trace_id)
    end
    if type(e) == "string" and not out.message then out.message = e end
  end
  if not out.message then out.message = common.excerpt(resp and resp.body) end
  if out.code and MODERATED[out.code] then out.kind = "moderated" end
  return out
end

-- The error of a task that ended in state "failed".
local function task_error(provider, j, id)
  local code = str(j.err_code) or str(j.reason)
  local kind = "failed"
  if code and MODERATED[code] then kind = "moderated" end
  if code and CANCELED[code] then kind = "canceled" end
  local msg = "generation failed"
  if kind == "moderated" then msg = "content moderation refused the task" end
  if kind == "canceled" then msg = "the task was canceled" end
  if code then msg = msg .. " (" .. code .. ")" end
  if str(j.message) then msg = msg .. ": " .. j.message end
  return errors.new{ kind = kind, provider = provider, code = code, task_id = id, message = msg }
end

-- Copies a Vidu task answer (create or creations) onto the task.
local function apply(provider, task, j)
  task.raw = j
  local state = str(j.state)
  if j.credits ~= nil then task.cost = common.number(j.credits) end
  local c = tab(first(j.creations))
  if c then
    task.video_url = str(c.url) or task.video_url
    task.cover_url = str(c.cover_url) or task.cover_url
    task.watermarked_url = str(c.watermarked_url) or task.watermarked_url
  end
  local status = state and STATES[state]
  if not status then
    -- Unknown states are treated as still running: polling goes on until wait's timeout.
    task.status = task.status == "queued" and "queued" or "running"
    return
  end
  if status == "failed" then
    local err = task_error(provider, j, task.id)
    task.error = err
    task.status = err.kind == "canceled" and "canceled" or "failed"
    return
  end
  if status == "succeeded" and not task.video_url then
    task.status = "failed"
    task.error = common.provider_error(provider, "state success but no creations[].url",
      { task_id = task.id })
    return
  end
  task.status = status
end

--- Builds a driver. cfg: name, env_key, default_base_url, auth_scheme ("Token"|"Bearer"),
-- prefix ("/ent/v2"), upload_prefix ("/tools/v2" or nil), can_cancel, base_url_required.
function vidu_api.new(cfg)
  local name, prefix = cfg.name, cfg.prefix
  local driver = {
    name = name,
    env_key = cfg.env_key,
    default_base_url = cfg.default_base_url,
    base_url_required = cfg.base_url_required,
    -- Vidu tasks take tens of seconds to minutes; start at 2 s, back off to 15 s.
    poll_defaults = { first = 2, max = 15, factor = 1.5 },
    parse_error = vidu_api.parse_error,
  }

  --- The Authorization header value.
  function driver.auth_header(key)
    return cfg.auth_scheme .. " " .. key
  end

  --- Validates submit parameters (no network I/O). Returns normalized params | nil, err.
  function driver.check(_, params)
    return validate.check(name, params)
  end

  -- Vidu's three-step upload: create, PUT to the pre-signed URL, finish with the ETag.
  local upload
  if cfg.upload_prefix then
    upload = function(client, desc)
      local resp, err = client:request{
        method = "POST", path = cfg.upload_prefix .. "/files/uploads",
        json = { scene = "vidu" }, idempotent = true,
      }
      if not resp then return nil, err end
      local j = tab(resp.json) or {}
      local id, put_url = common.id(j.id), str(j.put_url)
      if not id or not common.is_http_url(put_url) then
        return nil, common.provider_error(name, "upload: the answer has no id/put_url")
      end
      local put, perr = images.put(client, put_url, desc)
      if not put then return nil, perr end
      local etag = put.headers and put.headers.etag
      if not str(etag) then
        return nil, common.provider_error(name, "upload: the PUT answer has no ETag header")
      end
      local fin, ferr = client:request{
        method = "PUT", path = cfg.upload_prefix .. "/files/uploads/" .. id .. "/finish",
        json = { etag = etag }, idempotent = true,
      }
      if not fin then return nil, ferr end
      local uri = str(tab(fin.json) and fin.json.uri)
      if not uri then
        return nil, common.provider_error(name, "upload: finish returned no uri")
      end
      return uri
    end
    driver.upload = upload
  end

  --- Sends the create request: uploads or inlines the image first.
  function driver.submit(client, p)
    local image, ierr = images.materialize(client, name, p.image, upload)
    if not image then return nil, ierr end
    local body = { model = p.model, images = { image } }
    for _, k in ipairs(BODY_FIELDS) do
      if p[k] ~= nil then body[k] = p[k] end
    end
    if type(body.meta_data) == "table" then body.meta_data = json.encode(body.meta_data) end
    local resp, err = client:request{
      method = "POST", path = prefix .. "/img2video", json = body, idempotent = false,
    }
    if not resp then return nil, common.refine(err, MODERATED) end
    local j = tab(resp.json)
    if not j then return nil, common.uncertain(name, "the create answer is not JSON", resp) end
    local id = common.id(j.task_id) or common.id(j.id)
    if not id then
      local pe = vidu_api.parse_error(resp)
      return nil, common.uncertain(name, "the create answer has no task_id"
        .. (pe.message and (" (" .. pe.message .. ")") or ""), resp)
    end
    local fields = { id = id, status = "queued", model = str(j.model) or p.model }
    apply(name, fields, j)
    -- Created then failed at once (ComfyUI treats this as an immediate error): the task
    -- exists and is reported as failed, with its id.
    return fields
  end

  --- Reads the task's state and creations.
  local function poll_task(client, task)
    local resp, err = client:request{
      method = "GET", path = prefix .. "/tasks/" .. common.urlencode(task.id) .. "/creations",
      idempotent = true,
    }
    if not resp then return nil, err end
    local j = tab(resp.json)
    if not j then
      return nil, common.provider_error(name, "the task answer is not JSON",
        { status = resp.status, retryable = true, task_id = task.id })
    end
    apply(name, task, j)
    return true
  end

  if cfg.can_cancel then
    --- Asks Vidu to cancel (POST .../cancel with {"id": ...}); success answers {}.
    function driver.cancel(client, task)
      local resp, err = client:request{
        method = "POST", path = prefix .. "/tasks/" .. common.urlencode(task.id) .. "/cancel",
        json = { id = task.id }, idempotent = true,
      }
      if not resp then return nil, common.with_task_id(err, task.id) end
      return true
    end
  end

  driver.poll = poll_task

  -- Re-attaches to a task by id: Vidu's URLs are built from the id alone.
  driver.attach = common.attach_by_id(name)

  return driver
end

return vidu_api
