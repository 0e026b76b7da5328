--- fal.ai queue API for fal-ai/vidu/q1/image-to-video: submit to the full model id; status,
-- status/stream (SSE), result and cancel under owner/app only; storage uploads (initiate + PUT,
-- and the v3 CDN token + /files/upload); webhooks (?fal_webhook=) signed with Ed25519, the key
-- set served at /.well-known/jwks.json.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local json = require("vidu.emulator.json")
local util = require("vidu.emulator.util")
local image = require("vidu.emulator.image")
local sign = require("vidu.emulator.sign")
local uploads = require("vidu.emulator.uploads")

local P = { name = "fal", prefixes = { "/fal-ai/", "/storage/", "/files/", "/.well-known/" } }

local MODEL = "/fal-ai/vidu/q1/image-to-video"
local APP = "/fal-ai/vidu"
local AMPLITUDES = { "auto", "small", "medium", "large" }
local INFRA_TYPES = { [502] = "runner_connection_refused", [503] = "runner_scheduling_failure",
  [504] = "request_timeout", [500] = "internal_server_error" }

--- Error body: {"detail": "..."} (plus error_type for infrastructure statuses).
function P.error_body(app, status, message)
  local headers = { ["Content-Type"] = "application/json" }
  local body = { detail = message or "error" }
  if status >= 500 and INFRA_TYPES[status] then
    body.error_type = INFRA_TYPES[status]
    headers["X-Fal-Error-Type"] = INFRA_TYPES[status]
    headers["x-fal-request-id"] = app:new_id("uuid")
  end
  return headers, json.encode(body)
end

local function detail(app, res, status, errors, retryable)
  return app:json(res, status, { detail = json.array(errors) },
    { ["X-Fal-Retryable"] = retryable and "true" or "false" })
end

local AUTH_ERRORS = { missing = "Missing authorization header", denied = "Invalid API key",
  scheme = "Invalid authorization header: expected \"Key <FAL_KEY>\"" }
AUTH_ERRORS.empty = AUTH_ERRORS.scheme

local function authorize(app, req, res)
  local key, why = util.authorize(app, req, "fal", "Key")
  if not key then app:json(res, 401, { detail = AUTH_ERRORS[why] }) end
  return key
end

local function urls(app, id)
  local base = app.url .. APP .. "/requests/" .. id
  return base, base .. "/status", base .. "/cancel"
end

local function validate(app, b)
  local errs = {}
  local function add(field, msg, typ, ctx, input)
    errs[#errs + 1] = { loc = json.array({ "body", field }), msg = msg, type = typ, ctx = ctx, input = input }
  end
  local got
  if b.prompt == nil then add("prompt", "Field required", "missing")
  elseif type(b.prompt) ~= "string" then
    add("prompt", "Input should be a valid string", "string_type", nil, b.prompt)
  elseif image.char_len(b.prompt) > 1500 then
    add("prompt", "String should have at most 1500 characters", "string_too_long", { max_length = 1500 })
  end
  if b.image_url == nil then add("image_url", "Field required", "missing")
  elseif type(b.image_url) ~= "string" then add("image_url", "Input should be a valid string", "string_type")
  else
    local why, msg
    got, why, msg = app.media:resolve(b.image_url)
    if not got then
      if why == "missing" or why == "invalid" then
        add("image_url",
          "Failed to download the file. Please check if the URL is accessible. (" .. msg .. ")",
          "file_download_error", nil, b.image_url:sub(1, 200))
      else
        add("image_url",
          "Failed to load the image. Please ensure the image file is not corrupted and is in a "
          .. "supported format. (" .. msg .. ")", "image_load_error")
      end
    elseif got.info then
      local w, h = got.info.width, got.info.height
      if w == 0 or h == 0 or w / h > 4 or h / w > 4 then
        add("image_url", "Value error, the image aspect ratio must be between 1:4 and 4:1", "value_error")
      end
    end
  end
  if b.seed ~= nil and not util.as_int(b.seed) then
    add("seed", "Input should be a valid integer", "int_type", nil, b.seed)
  end
  local amp = b.movement_amplitude
  if amp == nil then amp = "auto" end
  if not util.one_of(amp, AMPLITUDES) then
    add("movement_amplitude", "Input should be 'auto', 'small', 'medium' or 'large'", "enum",
      { expected = "'auto', 'small', 'medium' or 'large'" }, amp)
  end
  if #errs > 0 then return nil, errs end
  return { prompt = b.prompt, image_url = b.image_url, seed = b.seed, movement_amplitude = amp,
    duration = 5 }, got
end

local STATUS = { created = "IN_QUEUE", queued = "IN_QUEUE", running = "IN_PROGRESS" }

-- fal's error documentation (fal.ai/docs/errors; model-apis/errors): each model error object
-- carries loc, msg, type and a `url` to the type's documentation.
local function doc_url(typ)
  return "https://docs.fal.ai/errors/#" .. typ
end

-- A start timeout (X-Fal-Request-Timeout) that expires before a runner takes the request:
-- 504 with X-Fal-Request-Timeout-Type: user (docs.fal.ai documentation/model-apis/
-- common-parameters). The body's error_type is not given there; decision: the request-errors
-- page's own example, {"detail": "Request timed out", "error_type": "request_timeout"}.
-- Config fal_start_timeout_type = "startup_timeout" gives the other reading ("the runner did
-- not start within the allowed time", same page).
local function timeout_type(app)
  return app.config.fal_start_timeout_type or "request_timeout"
end

local function logs_for(task, stage)
  local l = json.array()
  local t0 = task.created_wall
  local function add(msg, t)
    l[#l + 1] = { message = msg, level = "INFO", source = "user", timestamp = util.iso_time(t) }
  end
  if stage ~= "created" and stage ~= "queued" and stage ~= "timeout" then
    add("Starting video generation", task.running_at or t0)
    if stage == "succeeded" then add("Video generation completed", task.finished_at or util.now()) end
    if stage == "failed" or stage == "moderated" then
      add("Video generation failed", task.finished_at or util.now())
    end
  end
  return l
end

-- The status body (also each SSE event).
local function status_body(app, task, stage, with_logs)
  local response_url, status_url, cancel_url = urls(app, task.id)
  local b = { status = STATUS[stage] or "COMPLETED", request_id = task.id, response_url = response_url,
    status_url = status_url, cancel_url = cancel_url }
  if b.status == "IN_QUEUE" then b.queue_position = app.tasks:queue_position(task) end
  -- Always present: the official Python client reads data["logs"] unconditionally (fal_client
  -- client.py _parse_status) and fal-js types it as required; empty when logs=0 was asked.
  b.logs = with_logs and logs_for(task, stage) or json.array()
  if b.status == "COMPLETED" then
    if task.running_at then
      b.metrics = { inference_time = (task.finished_at or util.now()) - task.running_at }
    end
    if stage == "failed" then b.error, b.error_type = "Video generation failed", "downstream_service_error"
    elseif stage == "timeout" then b.error, b.error_type = "Request timed out", timeout_type(app)
    elseif stage == "moderated" then b.error, b.error_type = "Content policy violation",
      "content_policy_violation"
    elseif stage == "canceled" then b.error, b.error_type = "Request was cancelled", "request_cancelled" end
  end
  return b
end

-- X-Fal-Retryable on a failed generation's result: the errors page marks the header
-- [OPTIONAL], so by default it is left out and the status (400, 422) alone says "do not
-- retry"; config fal_retryable_header = "false" or "true" sends it with that value.
local function retryable_headers(app, headers)
  local v = app.config.fal_retryable_header
  if v == "true" or v == "false" then headers["X-Fal-Retryable"] = v end
  return headers
end

-- The result: status, body and headers. A failed generation is fal's model error
-- downstream_service_error, whose documented status is 400 (fal.ai/docs/errors); a policy
-- refusal is content_policy_violation, 422; an expired start timeout a 504 request error.
local function result(app, task, stage)
  if stage == "succeeded" then
    return 200, { video = { url = app:media_link(task.video_url), content_type = "video/mp4",
      file_name = "output.mp4" } }, {}
  elseif stage == "failed" then
    return 400, { detail = json.array({ { loc = json.array({ "body" }),
      msg = "Video generation failed. Please try again.",
      type = "downstream_service_error", url = doc_url("downstream_service_error"),
      input = { prompt = task.input.prompt } } }) }, retryable_headers(app, {})
  elseif stage == "moderated" then
    return 422, { detail = json.array({ { loc = json.array({ "body", "prompt" }),
      msg = "The content could not be processed because it contained material flagged by a content checker.",
      type = "content_policy_violation", url = doc_url("content_policy_violation"),
      input = task.input.prompt } }) }, retryable_headers(app, {})
  elseif stage == "timeout" then
    local typ = timeout_type(app)
    return 504, { detail = "Request timed out", error_type = typ },
      { ["X-Fal-Request-Timeout-Type"] = "user", ["X-Fal-Error-Type"] = typ }
  elseif stage == "canceled" then
    return 400, { detail = "Request was cancelled" }, {}
  end
  return 400, { detail = "Request is still in progress" }, {}
end

-- The queue headers of a submit (docs.fal.ai documentation/model-apis/common-parameters;
-- fal-js headers.ts) -> task fields | nil, message.
-- * X-Fal-Request-Timeout: a time-to-start deadline in seconds, counted from the submit; a
--   request still IN_QUEUE then ends COMPLETED and its result is a 504 (see timeout_type).
--   The page gives the minimum as "> 0.1 seconds" (an older synchronous-requests page: "at
--   least 1 second"; both official SDKs refuse <= 1 s on their side). Decision: refuse 0.1 and
--   below with a 400 bad_request request error (the request-errors page names "invalid timeout
--   header" as bad_request); config fal_min_start_timeout = 1 refuses 1 s and below, as the
--   SDKs do.
-- * X-Fal-Queue-Priority: "low" sits behind every normal-priority request of the endpoint
--   (queue_position counts them); any other value is recorded and queued as normal (what
--   fal does with an unknown value is not documented).
-- * X-Fal-Runner-Hint: recorded (visible in the control API's task listing); there is one
--   runner here, so it changes nothing else.
local function queue_headers(app, req)
  local h = req.headers
  local out = {}
  local t = h["x-fal-request-timeout"]
  if t ~= nil then
    local n = tonumber(t)
    local min = tonumber(app.config.fal_min_start_timeout) or 0.1
    if not n or n ~= n or n <= min then
      return nil, "Invalid X-Fal-Request-Timeout header: it must be a number of seconds above " .. min
    end
    out.start_timeout = n
    out.start_deadline = util.mono() + n
  end
  out.priority = h["x-fal-queue-priority"]
  out.runner_hint = h["x-fal-runner-hint"]
  return out
end

local function want_logs(req)
  local v = req.params.logs
  return v == "1" or v == "true"
end

local function find_task(app, req, res, id)
  local key = authorize(app, req, res)
  local task = key and app.tasks:owned(id, "fal", key)
  if key and not task then app:json(res, 404, { detail = "Request " .. id .. " not found" }) end
  return task
end

local function user_id(key)
  local id = key:match("^([^:]+):")
  return id or ("user-" .. image.fingerprint(key))
end

local function signer(app, task)
  return function(body, cb)
    local key = app.signing_key
    if not key then return cb(nil, "no signing key") end
    local ts = tostring(app.webhooks:timestamp())
    local uid = user_id(task.key)
    sign.sha256_hex(body, function(hex, err)
      if not hex then return cb(nil, err) end
      local msg = task.id .. "\n" .. uid .. "\n" .. ts .. "\n" .. hex
      sign.ed25519_sign(key, app.dir, msg, function(sig, serr)
        if not sig then return cb(nil, serr) end
        cb({ ["X-Fal-Webhook-Request-Id"] = task.id, ["X-Fal-Webhook-User-Id"] = uid,
          ["X-Fal-Webhook-Timestamp"] = ts, ["X-Fal-Webhook-Signature"] = sig })
      end)
    end)
  end
end

--- On a finished task with a fal_webhook: sends the signed callback.
function P.on_change(app, task, _, new)
  if not task.callback_url or not (new == "succeeded" or new == "failed" or new == "moderated"
    or new == "canceled" or new == "timeout") then return end
  local status, body = result(app, task, new)
  local payload = { request_id = task.id, gateway_request_id = task.id, payload = body }
  if status == 200 then
    payload.status = "OK"
  else
    payload.status = "ERROR"
    payload.error = "Invalid status code: " .. status
  end
  app.webhooks:send{ provider = "fal", task_id = task.id, url = task.callback_url, event = payload.status,
    body = json.encode(payload), attempts = tonumber(app.config.fal_webhook_attempts) or 10,
    sign = sign.available() and signer(app, task) or nil, sig_header = "X-Fal-Webhook-Signature" }
end

--- Adds fal's routes (submit, status, status stream, result, cancel, storage upload, JWKS)
-- to router r.
function P.routes(app, r)
  r:add("POST", MODEL, function(req, res)
    local key = authorize(app, req, res)
    if not key then return end
    local b = json.decode(req.body)
    if type(b) ~= "table" or b[1] ~= nil then
      return detail(app, res, 422, { { loc = json.array({ "body" }),
        msg = "Input should be a valid dictionary",
        type = "dict_type" } })
    end
    local hook = req.params.fal_webhook
    if hook and not hook:match("^https?://") then
      return app:json(res, 400, { detail = "fal_webhook must be an http(s) URL" })
    end
    local queue, qerr = queue_headers(app, req)
    if not queue then
      return app:json(res, 400, { detail = qerr, error_type = "bad_request" },
        { ["X-Fal-Error-Type"] = "bad_request" })
    end
    local input, errs = validate(app, b)
    if not input then return detail(app, res, 422, errs) end
    local got = errs
    local job = app.media:job(got and got.bytes, 5, input.movement_amplitude)
    local fields = { id = app:new_id("uuid"), key = key, input = input,
      callback_url = hook, video_url = app.media:video_url(job), cover_url = app.media:cover_url(job) }
    for k, v in pairs(queue) do fields[k] = v end
    local task = app.tasks:create("fal", fields, hook ~= nil)
    local response_url, status_url, cancel_url = urls(app, task.id)
    local out = { status = "IN_QUEUE", request_id = task.id, response_url = response_url,
      status_url = status_url, cancel_url = cancel_url, queue_position = app.tasks:queue_position(task) }
    if hook then out.gateway_request_id = task.id end
    return app:json(res, 200, out, { ["x-fal-request-id"] = task.id })
  end)

  r:add("GET", APP .. "/requests/{}/status", function(req, res, id)
    local task = find_task(app, req, res, id)
    if not task then return end
    local stage = app.tasks:poll(task)
    local b = status_body(app, task, stage, want_logs(req))
    return app:json(res, b.status == "COMPLETED" and 200 or 202, b, { ["x-fal-request-id"] = task.id })
  end)

  r:add("GET", APP .. "/requests/{}/status/stream", function(req, res, id)
    local task = find_task(app, req, res, id)
    if not task then return end
    local logs = want_logs(req)
    -- Config fal_stream and fal_stream_cut_after (see the emulator's defaults) make the
    -- stream misbehave, for clients' fallback to polling.
    local mode = app.config.fal_stream or "serve"
    if mode == "refuse" then return app:json(res, 404, { detail = "Not Found" }) end
    if mode == "json" then
      local b = status_body(app, task, app.tasks:poll(task), logs)
      return app:json(res, 200, b, { ["x-fal-request-id"] = task.id })
    end
    res:stream(200, { ["Content-Type"] = "text/event-stream", ["Cache-Control"] = "no-cache",
      ["x-fal-request-id"] = task.id })
    if res.head_only then return res:finish() end
    if mode == "silent" then return end
    local interval = math.floor((tonumber(app.config.stream_interval) or 0.2) * 1000)
    local cut = tonumber(app.config.fal_stream_cut_after)
    local sent = 0
    local function tick()
      if res:closed() then return end
      if cut and sent >= cut then return res:close_now() end
      local stage = app.tasks:poll(task)
      local b = status_body(app, task, stage, logs)
      res:write("data: " .. json.encode(b) .. "\n\n")
      sent = sent + 1
      if b.status == "COMPLETED" then return res:finish() end
      res:after(interval, tick)
    end
    tick()
  end)

  r:add("GET", APP .. "/requests/{}", function(req, res, id)
    local task = find_task(app, req, res, id)
    if not task then return end
    local stage = app.tasks:observe(task)
    local status, body, headers = result(app, task, stage)
    headers["x-fal-request-id"] = task.id
    return app:json(res, status, body, headers)
  end)

  r:add("PUT", APP .. "/requests/{}/cancel", function(req, res, id)
    local key = authorize(app, req, res)
    if not key then return end
    local task = app.tasks:owned(id, "fal", key)
    if not task then return app:json(res, 404, { status = "NOT_FOUND" }) end
    app.tasks:observe(task)
    if not app.tasks:cancel(task) then
      return app:json(res, 400, { status = "ALREADY_COMPLETED" })
    end
    return app:json(res, 202, { status = "CANCELLATION_REQUESTED" })
  end)

  -- Storage: the "initiate" flow, and the v3 CDN token flow.
  r:add("POST", "/storage/upload/initiate", function(req, res)
    if not authorize(app, req, res) then return end
    local b = json.decode(req.body)
    if type(b) ~= "table" then return app:json(res, 422, { detail = "body must be a JSON object" }) end
    local name = type(b.file_name) == "string" and b.file_name ~= "" and b.file_name or "upload.bin"
    local ctype = type(b.content_type) == "string" and b.content_type or "application/octet-stream"
    local id, put_url = uploads.reserve(app, { content_type = ctype, name = name, provider = "fal" })
    return app:json(res, 200, { upload_url = put_url, file_url = app.media:upload_url(id, name) })
  end)
  app.fal_tokens = app.fal_tokens or {}
  r:add("POST", "/storage/auth/token", function(req, res)
    if not authorize(app, req, res) then return end
    local token = app:new_id("hex", 48)
    app.fal_tokens[token] = true
    return app:json(res, 200, { token = token, token_type = "Bearer", base_url = app.url,
      expires_at = util.iso_time(util.now() + 3600) })
  end)
  r:add("POST", "/files/upload", function(req, res)
    local token = util.auth_key(req, "Bearer")
    if not token or not app.fal_tokens[token] then
      return app:json(res, 401, { detail = "Invalid or expired upload token" })
    end
    local ctype = req.headers["content-type"] or "application/octet-stream"
    local name = req.headers["x-fal-file-name"] or "upload.bin"
    local id = app:new_id("hex", 24)
    app.media:put_upload(id, req.body, ctype, name)
    return app:json(res, 200, { access_url = app.media:upload_url(id, name) })
  end)

  r:add("GET", "/.well-known/jwks.json", function(_, res)
    local keys = json.array()
    local k = app.signing_key
    if k then
      keys[1] = { kty = "OKP", crv = "Ed25519", x = k.x, kid = k.kid, use = "sig", alg = "EdDSA" }
    end
    return app:json(res, 200, { keys = keys }, { ["Cache-Control"] = "max-age=86400" })
  end)
end

return P
