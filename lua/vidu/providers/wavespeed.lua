--- WaveSpeedAI API v3 (api.wavespeed.ai) for vidu/image-to-video-2.0.
--
-- Bearer auth, a flat body, answers wrapped in {code, message, data}. Polling prefers the
-- data.urls.get the server returns (it may or may not end in /result). Optional sync mode
-- (`sync = true` sends enable_sync_mode): the submit blocks until the result is ready; when
-- the answer is not final (WaveSpeed's "Sync mode timed out", code 5004) the task keeps
-- running and we fall back to polling. No cancel is documented.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local images = require("vidu.images")
local url = require("vidu.url")
local fields = require("vidu.providers.fields")
local models = require("vidu.providers.vidu_models")
local common = require("vidu.providers.common")

local str, tab, first = common.str, common.tab, common.first
local F = fields.F
local MB = 1000 * 1000

local wavespeed = common.driver("wavespeed")
wavespeed.poll_defaults = { first = 2, max = 15, factor = 1.5 }
-- How long a sync-mode submit may block before we give up on the answer (seconds).
wavespeed.sync_timeout = 600

--- What WaveSpeed takes (its vidu/image-to-video-2.0 page): prompt required, up to 1500
-- characters; seed -1..2147483647 (-1, the default, meaning random); images under 50 MB,
-- inline under 10 MB (above that the upload API, rather than POST 67 MB of JSON), and the
-- upload API takes files up to 20 MB (wavespeed.ai/docs/upload-files; not confirmed for the
-- media/uploads ticket flow, so the stricter reading).
wavespeed.rules = fields.rules({
  { "model", F.model }, { "prompt", fields.with(F.prompt, { required = true }) },
  { "duration", F.duration },
  { "seed", fields.with(F.seed, { min = -1 }) },
  { "movement_amplitude", F.movement_amplitude }, { "sync", { t = "boolean" } },
  { "webhook", { t = "string", url = true } }, { "upload", F.upload }, { "image", F.image },
}, nil, {
  name = "wavespeed", prompt_max = 1500, models = models.wavespeed,
  default_model = "vidu/image-to-video-2.0",
  image = { max_bytes = 50 * MB, inline_below = 10 * MB, upload_below = 20 * MB + 1,
    can_upload = true },
})

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
  local put_url, download = str(up.url), str(d.download_url)
  if (j.code ~= nil and j.code ~= 200) or not url.is_url(put_url) or not download then
    return nil, common.provider_error("wavespeed", "upload: "
      .. (str(j.message) or "the answer has no upload.url/download_url"),
      { code = j.code ~= 200 and j.code or nil })
  end
  local headers = {}
  for k, v in pairs(tab(up.headers) or {}) do
    if type(k) == "string" and type(v) == "string" then headers[k] = v end
  end
  local put, perr = images.put(client, put_url, desc, headers)
  if not put then return nil, perr end
  return download
end

--- Reads a prediction (the data of the envelope, or a webhook body) into an observation.
-- Sync mode that ran out of time answers "processing" (code 5004): the task goes on. nil
-- when it is not a JSON object.
function wavespeed.read(d)
  d = tab(d)
  if not d then return nil end
  local obs = { raw = d, video_url = str(first(d.outputs)) }
  local urls = tab(d.urls)
  if urls and url.is_url(urls.get) then obs.extra = { get_url = urls.get } end
  local status = STATES[str(d.status) or ""]
  obs.status = status
  -- has_nsfw_contents: one boolean per output (the prediction's documented fields). A
  -- completed prediction whose output is flagged is a moderation refusal; its outputs stay on
  -- the task (task.video_url, task.outputs) for whoever wants them.
  local flags = tab(d.has_nsfw_contents)
  local flagged = false
  for _, f in ipairs(flags or {}) do if f == true then flagged = true end end
  if status == "succeeded" and flagged then
    obs.status = "failed"
    obs.extra = obs.extra or {}
    obs.extra.outputs, obs.extra.has_nsfw_contents = tab(d.outputs), flags
    obs.error = { kind = "moderated", code = "nsfw",
      message = "the output was flagged NSFW (has_nsfw_contents)" }
    return obs
  end
  if status == "failed" then
    local code = d.code
    if code == 0 then code = nil end
    local msg = str(d.error)
    if d.status == "timeout" then
      code = code or "timeout"
      msg = msg or "the provider timed the task out"
    end
    obs.error = {
      kind = code == MODERATED_CODE and "moderated" or "failed", code = code, message = msg,
      retryable = type(code) == "number" and code >= 5000 or nil,
    }
  end
  return obs
end

--- Reads a webhook body (the prediction, or the {code, data} envelope) -> observation, id.
function wavespeed.read_callback(j)
  local d = tab(tab(j) and j.data) or j
  local obs = wavespeed.read(d)
  return obs, obs and common.id(d.id)
end

-- The data of an answer's {code, message, data} envelope.
local function data_of(j)
  return tab(tab(j) and j.data)
end

--- Submits: POST /api/v3/{model}[?webhook=], flat body; with sync = true the answer may
-- already hold the video.
function wavespeed.submit(client, p)
  local image, ierr = images.field(client, "wavespeed", p.image, wavespeed.upload)
  if not image then return nil, ierr end
  local body = { image = image, prompt = p.prompt }
  for _, k in ipairs({ "duration", "movement_amplitude", "seed" }) do
    if p[k] ~= nil then body[k] = p[k] end
  end
  if p.sync then body.enable_sync_mode = true end
  local path = "/api/v3/" .. p.model
  if p.webhook then path = path .. "?webhook=" .. url.encode(p.webhook) end
  local resp, err = client:request{
    method = "POST", path = path, idempotent = false,
    -- Encoded once a connection slot is granted (vidu.http): a queued submit holds no body.
    json = function() return body end,
    timeout = p.sync and wavespeed.sync_timeout or nil,
    -- An inline image echoed back is cut in C; not in sync mode, whose answer is the result.
    elide_data_uris = not p.sync and common.ECHO_MAX or nil,
  }
  if not resp then return nil, err end
  local j = tab(resp.json)
  if not j then return nil, common.uncertain("wavespeed", "the submit answer is not JSON", resp) end
  local d = data_of(j)
  local id = d and common.id(d.id)
  if not id then
    -- An error envelope inside a 2xx: WaveSpeed refused the task, none was created.
    return common.no_task_id("wavespeed", resp, "data.id", j.code ~= nil and j.code ~= 200,
      j.code, str(j.message))
  end
  return { id = id, model = p.model }, wavespeed.read(d)
end

--- Polls urls.get (or /api/v3/predictions/{id}/result).
function wavespeed.poll(client, task)
  local req = { method = "GET", idempotent = true }
  -- urls.get as WaveSpeed gave it, unless it points away from its API host (the key goes).
  if task.get_url and client:is_own(task.get_url) then
    req.url = task.get_url
  else
    req.path = "/api/v3/predictions/" .. url.encode(task.id) .. "/result"
  end
  local resp, err = client:request(req)
  if not resp then return nil, err end
  local j = tab(resp.json)
  local obs = wavespeed.read(data_of(j))
  if not obs then
    return nil, common.provider_error("wavespeed", "the result answer has no data"
      .. (j and str(j.message) and (": " .. j.message) or ""),
      { status = resp.status, retryable = true, task_id = task.id,
        code = j and j.code ~= 200 and j.code or nil })
  end
  return obs
end

return wavespeed
