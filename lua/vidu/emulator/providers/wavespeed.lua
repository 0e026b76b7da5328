--- WaveSpeedAI API v3 for vidu/image-to-video-2.0: submit (with enable_sync_mode and
-- ?webhook=), predictions/{id}/result, media uploads, the per-key webhook secret, webhooks
-- signed "v3,<hex HMAC-SHA256>" over "{id}.{timestamp}.{body}". Everything in the
-- {code, message, data} envelope.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local json = require("vidu.emulator.json")
local util = require("vidu.emulator.util")
local image = require("vidu.emulator.image")
local sign = require("vidu.emulator.sign")
local uploads = require("vidu.emulator.uploads")

local P = { name = "wavespeed", prefixes = { "/api/v3/" } }

local MODEL = "vidu/image-to-video-2.0"
local AMPLITUDES = { "auto", "small", "medium", "large" }
local STATUS = { created = "created", queued = "created", running = "processing", succeeded = "completed",
  failed = "failed", moderated = "failed", canceled = "cancelled" }
local TASK_CODE = { failed = 1403, moderated = 1200, canceled = 1405 }
local TASK_ERROR = { failed = "Task Execution Failed: video generation failed",
  moderated = "Content Moderation: the output was flagged by the content checker",
  canceled = "Task Failed: the task was cancelled" }

--- WaveSpeed's error shape: headers, body for an HTTP status and message.
function P.error_body(_, status, message)
  return { ["Content-Type"] = "application/json" },
    json.encode({ code = status, message = message or "error", data = json.null })
end

local function fail(app, res, status, message)
  local h, b = P.error_body(app, status, message)
  return res:send(status, h, b)
end

local function ok(app, res, data)
  return app:json(res, 200, { code = 200, message = "success", data = data })
end

local AUTH_ERRORS = { missing = "Unauthorized: missing Authorization header",
  scheme = "Unauthorized: expected \"Bearer <api key>\"", denied = "Unauthorized: invalid api key" }
AUTH_ERRORS.empty = AUTH_ERRORS.scheme

local function authorize(app, req, res)
  local key, why = util.authorize(app, req, "wavespeed", "Bearer")
  if not key then fail(app, res, 401, AUTH_ERRORS[why]) end
  return key
end

local function validate(app, b)
  if b.image == nil then return nil, "image is required" end
  if type(b.image) ~= "string" then return nil, "image must be a string" end
  local got, why, msg = app.media:resolve(b.image)
  if not got then
    if why == "missing" or why == "invalid" then return nil, "image: media access failed: " .. msg end
    return nil, "image: " .. msg
  end
  if got.bytes then
    if #got.bytes >= 50 * 1024 * 1024 then return nil, "image: the image must be under 50MB" end
    local w, h = got.info.width, got.info.height
    if w == 0 or h == 0 or w / h > 4 or h / w > 4 then
      return nil, string.format("image: aspect ratio %dx%d is outside 1:4 .. 4:1", w, h)
    end
  end
  if b.prompt == nil then return nil, "prompt is required" end
  if type(b.prompt) ~= "string" then return nil, "prompt must be a string" end
  if b.prompt == "" then return nil, "prompt must not be empty" end
  if image.char_len(b.prompt) > 1500 then return nil, "prompt exceeds 1500 characters" end
  local duration = 4
  if b.duration ~= nil then
    duration = util.as_int(b.duration)
    if duration ~= 4 and duration ~= 8 then return nil, "duration must be 4 or 8" end
  end
  local amp = b.movement_amplitude
  if amp == nil then amp = "auto" end
  if not util.one_of(amp, AMPLITUDES) then
    return nil, "movement_amplitude must be one of auto, small, medium, large"
  end
  local seed = -1
  if b.seed ~= nil then
    seed = util.as_int(b.seed)
    if not seed or seed < -1 or seed > 2147483647 then
      return nil, "seed must be an integer in -1 ~ 2147483647"
    end
  end
  if b.enable_sync_mode ~= nil and type(b.enable_sync_mode) ~= "boolean" then
    return nil, "enable_sync_mode must be a boolean"
  end
  return { image = b.image, prompt = b.prompt, duration = duration, movement_amplitude = amp, seed = seed,
    enable_sync_mode = b.enable_sync_mode or false }, got
end

local function result_url(app, id)
  return app.url .. "/api/v3/predictions/" .. id .. "/result"
end

-- has_nsfw_contents: "Array of boolean values indicating NSFW detection for each output"
-- (WaveSpeed's prediction response). Outcome "nsfw" completes the prediction with its outputs,
-- flagged [true]; outcome "moderated" fails it with code 1200 and no outputs.
local function data_for(app, task, stage)
  local outputs, nsfw = json.array(), json.array()
  if stage == "succeeded" then
    outputs[1] = app:media_link(task.video_url)
    nsfw[1] = task.nsfw == true
  elseif stage == "moderated" then
    nsfw[1] = true
  end
  local inference = 0
  if task.finished_at and task.running_at then
    inference = math.floor((task.finished_at - task.running_at) * 1000)
  end
  return { id = task.id, model = MODEL, outputs = outputs, urls = { get = result_url(app, task.id) },
    has_nsfw_contents = nsfw, status = STATUS[stage], created_at = util.iso_time(task.created_wall),
    error = TASK_ERROR[stage] or "", code = TASK_CODE[stage] or 0, timings = { inference = inference } }
end

local function secret_for(app, key)
  app.ws_secrets = app.ws_secrets or {}
  local s = app.ws_secrets[key]
  if not s then
    s = "whsec_" .. app:new_id("hex", 40)
    app.ws_secrets[key] = s
  end
  return s
end

local function signer(app, task)
  return function(body, cb)
    local ts = tostring(app.webhooks:timestamp())
    local secret = secret_for(app, task.key):gsub("^whsec_", "")
    sign.hmac_sha256(secret, task.id .. "." .. ts .. "." .. body, function(raw, err)
      if not raw then return cb(nil, err) end
      cb({ ["webhook-id"] = task.id, ["webhook-timestamp"] = ts, ["webhook-signature"] = "v3,"
        .. sign.tohex(raw) })
    end)
  end
end

--- On a finished task: answers the sync-mode requests waiting on it and sends its webhook.
function P.on_change(app, task, _, new)
  local terminal = new == "succeeded" or new == "failed" or new == "moderated" or new == "canceled"
  if not terminal then return end
  if task.sync_waiters then
    local waiters = task.sync_waiters
    task.sync_waiters = nil
    for _, w in ipairs(waiters) do w(new) end
  end
  if not task.callback_url then return end
  local d = data_for(app, task, new)
  local payload = { id = d.id, model = d.model, input = task.input_echo, outputs = d.outputs, urls = d.urls,
    has_nsfw_contents = d.has_nsfw_contents, status = d.status, created_at = d.created_at, error = d.error,
    executionTime = d.timings.inference, timings = d.timings }
  app.webhooks:send{ provider = "wavespeed", task_id = task.id, url = task.callback_url, event = d.status,
    body = json.encode(payload), attempts = 4, sign = sign.available() and signer(app, task) or nil,
    sig_header = "webhook-signature" }
end

local function find_task(app, req, res, id)
  local key = authorize(app, req, res)
  local task = key and app.tasks:owned(id, "wavespeed", key)
  if key and not task then fail(app, res, 404, "prediction " .. id .. " not found") end
  return task
end

local function multipart_file(req)
  local ctype = req.headers["content-type"] or ""
  local boundary = ctype:match("boundary=\"?([^\";]+)\"?")
  if not boundary then return nil end
  local body = req.body
  local delim = "--" .. boundary
  local pos = 1
  while true do
    local s, e = body:find(delim, pos, true)
    if not s then return nil end
    local head_end = body:find("\r\n\r\n", e, true)
    if not head_end then return nil end
    local head = body:sub(e + 1, head_end - 1)
    local next_s = body:find("\r\n" .. delim, head_end + 4, true)
    if not next_s then return nil end
    if head:find('name="file"', 1, true) then
      return body:sub(head_end + 4, next_s - 1), head:match('filename="([^"]*)"'),
        head:match("[Cc]ontent%-[Tt]ype:%s*([^\r\n]+)")
    end
    pos = next_s + 2
  end
end

--- Adds WaveSpeed's routes (submit, result, webhook secret, media uploads) to router r.
function P.routes(app, r)
  r:add("POST", "/api/v3/vidu/image-to-video-2.0", function(req, res)
    local key = authorize(app, req, res)
    if not key then return end
    local b = json.decode(req.body)
    if type(b) ~= "table" then return fail(app, res, 400, "request body must be a JSON object") end
    local hook = req.params.webhook
    if hook and not hook:match("^https?://") then
      return fail(app, res, 400, "webhook must be an http(s) URL")
    end
    local input, got = validate(app, b)
    if not input then return fail(app, res, 400, got) end
    local job = app.media:job(got.bytes, input.duration, input.movement_amplitude)
    local sync = input.enable_sync_mode
    local echo = util.copy(b)
    if type(echo.image) == "string" and #echo.image > 256 then echo.image = echo.image:sub(1, 64) .. "..." end
    local task = app.tasks:create("wavespeed", { id = app:new_id("hex", 32), key = key, input = input,
      input_echo = echo, callback_url = hook, video_url = app.media:video_url(job),
      cover_url = app.media:cover_url(job) }, hook ~= nil or sync)
    if not sync then return ok(app, res, data_for(app, task, "created")) end
    -- Sync mode: answer when the task ends, or with a "Sync mode timed out" processing answer.
    local answered = false
    local function answer(stage)
      if answered or res:closed() then return end
      answered = true
      local d = data_for(app, task, stage)
      if not app.tasks.TERMINAL[stage] then
        d.status, d.code, d.error = "processing", 5004,
          "Sync mode timed out, please poll urls.get for the result"
      end
      return ok(app, res, d)
    end
    local stage = app.tasks:observe(task)
    if app.tasks.TERMINAL[stage] then return answer(stage) end
    task.sync_waiters = task.sync_waiters or {}
    task.sync_waiters[#task.sync_waiters + 1] = answer
    res:after((tonumber(app.config.sync_timeout) or 60) * 1000, function()
      answer(app.tasks:observe(task))
    end)
  end)

  local function result(req, res, id)
    local task = find_task(app, req, res, id)
    if not task then return end
    return ok(app, res, data_for(app, task, app.tasks:poll(task)))
  end
  r:add("GET", "/api/v3/predictions/{}/result", result)
  r:add("GET", "/api/v3/predictions/{}", result)

  r:add("GET", "/api/v3/webhook/secret", function(req, res)
    local key = authorize(app, req, res)
    if not key then return end
    return ok(app, res, { secret = secret_for(app, key) })
  end)

  r:add("POST", "/api/v3/media/uploads", function(req, res)
    if not authorize(app, req, res) then return end
    local b = json.decode(req.body)
    if type(b) ~= "table" then return fail(app, res, 400, "request body must be a JSON object") end
    if type(b.filename) ~= "string" or b.filename == "" then
      return fail(app, res, 400, "filename is required")
    end
    local ctype = type(b.content_type) == "string" and b.content_type or "application/octet-stream"
    local id, put_url = uploads.reserve(app, { content_type = ctype, name = b.filename,
      provider = "wavespeed" })
    return ok(app, res, { upload = { method = "PUT", url = put_url, headers = { ["Content-Type"] = ctype } },
      download_url = app.media:upload_url(id, b.filename) })
  end)

  r:add("POST", "/api/v3/media/upload/binary", function(req, res)
    if not authorize(app, req, res) then return end
    local bytes, name, ctype = multipart_file(req)
    if not bytes then return fail(app, res, 400, "multipart field \"file\" is required") end
    name = (name and name ~= "") and name or "upload.bin"
    ctype = ctype or "application/octet-stream"
    local id = app:new_id("hex", 24)
    app.media:put_upload(id, bytes, ctype, name)
    local kind = ctype:match("^(%a+)/") or "file"
    return ok(app, res, { type = kind, content_type = ctype, filename = name, size = #bytes,
      download_url = app.media:upload_url(id, name) })
  end)
end

return P
