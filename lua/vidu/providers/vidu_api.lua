--- The Vidu API ("ent/v2"), shared by the official provider and Vidu-compatible gateways.
--
-- Gateways pass Vidu's own body and answers through (cus_priority, credits, state, ...), so
-- one implementation serves both; what differs is configuration: the auth scheme (Token for
-- Vidu, Bearer for gateways), the path prefix (/ent/v2 or /vidu/v2), the upload API (Vidu
-- only), cancel (Vidu only; no gateway documents one) and the fields and models taken.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local json = require("vidu.json")
local images = require("vidu.images")
local url = require("vidu.url")
local fields = require("vidu.providers.fields")
local models = require("vidu.providers.vidu_models")
local common = require("vidu.providers.common")
local batch = require("vidu.providers.vidu_batch")

local str, tab, first = common.str, common.tab, common.first
local MB = 1000 * 1000

local vidu_api = {}

-- Vidu's task states to ours: the five of platform.vidu.com/docs/get-generation, plus what
-- Vidu's own lifecycle (vidu-skills, errors_and_retry.md) names: preparation and scheduling
-- before processing, and canceled, a terminal state (a canceled task is not polled on).
local STATES = {
  created = "queued", queueing = "queued", scheduled = "queued", preparation = "queued",
  scheduling = "queued",
  processing = "running",
  success = "succeeded",
  failed = "failed",
  canceled = "canceled", cancelled = "canceled",
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
-- {"error":{message,type,code}} wrapper of new-api style gateways, or plain text.
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
    if type(j.error) == "string" and not out.message then out.message = j.error end
  end
  if not out.message then out.message = common.excerpt(resp and resp.body) end
  if out.code and MODERATED[out.code] then out.kind = "moderated" end
  return out
end

--- Reads a Vidu task answer (the create answer, GET .../creations, or a callback body) into
-- an observation. Unknown states leave the status as it is: polling goes on until wait's
-- timeout. nil when the answer is not a JSON object.
function vidu_api.read(j)
  j = tab(j)
  if not j then return nil end
  local obs = { raw = j, cost = common.number(j.credits), progress = common.number(j.progress) }
  local c = tab(first(j.creations))
  if c then
    obs.video_url, obs.cover_url = str(c.url), str(c.cover_url)
    if str(c.watermarked_url) then obs.extra = { watermarked_url = c.watermarked_url } end
  end
  local status = STATES[str(j.state) or ""]
  obs.status = status
  if status == "failed" then
    local code = str(j.err_code) or str(j.reason)
    local kind = "failed"
    if code and MODERATED[code] then kind = "moderated" end
    if code and CANCELED[code] then obs.status = "canceled" end
    obs.error = { kind = kind, code = code, message = str(j.message) }
  end
  return obs
end

--- Reads a callback body (the creations answer, with the task's id) -> observation, id.
-- Vidu's signature covers the request line and headers, not the body: confirm a state
-- that matters with a poll (vidu.webhooks README note).
function vidu_api.read_callback(j)
  local obs = vidu_api.read(j)
  return obs, obs and (common.id(j.id) or common.id(j.task_id))
end

--- Builds a driver. cfg: name (in the registry), auth_scheme ("Token"|"Bearer"), prefix
-- ("/ent/v2"), upload_prefix ("/tools/v2" or nil), can_cancel, list (the provider has the
-- task list GET {prefix}/tasks), except (body fields the provider does not take).
function vidu_api.new(cfg)
  local name, prefix = cfg.name, cfg.prefix
  local driver = common.driver(name)
  -- Vidu tasks take tens of seconds to minutes; start at 2 s, back off to 15 s.
  driver.poll_defaults = { first = 2, max = 15, factor = 1.5 }
  driver.parse_error = vidu_api.parse_error
  driver.read = vidu_api.read
  driver.read_callback = vidu_api.read_callback
  -- Images: under 10 MB decoded inline (the older, stricter Vidu page) and under 10 MB
  -- through the upload API (platform.vidu.com/docs/image-upload: "less than 10MB"; Vidu's
  -- own CLI shrinks anything larger before uploading), so a larger local file is refused
  -- before anything is sent; an http(s) URL may point at up to 50 MB, which Vidu fetches.
  -- ssupload: Vidu's own upload references are taken as they are.
  driver.rules = fields.rules(fields.VIDU_BODY, cfg.except, {
    name = name, prompt_max = 1500, models = models[name], default_model = "viduq1",
    image = { max_bytes = 50 * MB, inline_below = 10 * MB, upload_below = 10 * MB,
      can_upload = cfg.upload_prefix ~= nil, ssupload = cfg.upload_prefix ~= nil },
  })

  --- The Authorization header value.
  function driver.auth_header(key)
    return cfg.auth_scheme .. " " .. key
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
      if not id or not url.is_url(put_url) then
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

  --- Sends the create request: uploads or inlines the image first (a local file inline is
  -- streamed: images.field). A task created and failed at once (ComfyUI treats this as an
  -- immediate error) exists and is reported as failed, with its id.
  function driver.submit(client, p)
    local image, ierr = images.field(client, name, p.image, upload)
    if not image then return nil, ierr end
    local body = { model = p.model, images = { image } }
    for _, k in ipairs(BODY_FIELDS) do
      if p[k] ~= nil then body[k] = p[k] end
    end
    if type(body.meta_data) == "table" then body.meta_data = json.encode(body.meta_data) end
    local resp, err = client:request{
      method = "POST", path = prefix .. "/img2video", idempotent = false,
      -- Encoded once a connection slot is granted (vidu.http): a queued submit holds no body.
      json = function() return body end,
      -- Vidu's create answer echoes the images sent: an inline one is cut before it is a string.
      elide_data_uris = common.ECHO_MAX,
    }
    if not resp then return nil, err end
    local j = tab(resp.json)
    if not j then return nil, common.uncertain(name, "the create answer is not JSON", resp) end
    local id = common.id(j.task_id) or common.id(j.id)
    if not id then
      local pe = vidu_api.parse_error(resp)
      return nil, common.uncertain(name, "the create answer has no task_id"
        .. (pe.message and (" (" .. pe.message .. ")") or ""), resp)
    end
    local obs = vidu_api.read(j)
    obs.status = obs.status or "queued"
    return { id = id, model = str(j.model) or p.model }, obs
  end

  -- Reads one task's state and creations.
  local function poll_one(client, task)
    return common.poll_json(client, task, {
      method = "GET", path = prefix .. "/tasks/" .. url.encode(task.id) .. "/creations",
      idempotent = true,
    }, vidu_api.read)
  end

  if cfg.list then
    -- Vidu's task list (GET {prefix}/tasks?task_ids[]=...): the polls of a client's tasks that
    -- fall due close together go out as one request (vidu.providers.vidu_batch). Client
    -- options: batch_polls = false polls each task on its own; batch_window (s, default
    -- 0.05) is how long a batch waits for more polls to join.
    driver.options = { batch_polls = "boolean", batch_window = "number" }
    function driver.init(client, opts)
      local w = opts.batch_window
      if w ~= nil and (w ~= w or w < 0 or w > 1) then
        error("vidu.client: option batch_window must be a number of seconds in 0..1", 4)
      end
      if opts.batch_polls ~= false then
        client._batch = batch.new(client, { path = prefix .. "/tasks", read = vidu_api.read,
          single = poll_one, window = w })
      end
    end
  end

  --- Reads the task's state and creations: through the client's batch of polls when it has
  -- one, else on its own.
  function driver.poll(client, task)
    local b = client._batch
    if b then return b:poll(task) end
    return poll_one(client, task)
  end

  if cfg.can_cancel then
    --- Asks Vidu to cancel (POST .../cancel with {"id": ...}); success answers {}.
    function driver.cancel(client, task)
      local resp, err = client:request{
        method = "POST", path = prefix .. "/tasks/" .. url.encode(task.id) .. "/cancel",
        json = { id = task.id }, idempotent = true,
      }
      if not resp then return nil, common.with_task_id(err, task.id) end
      return true
    end
  end

  return driver
end

return vidu_api
