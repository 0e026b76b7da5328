--- Vtrix (cloud.vtrix.ai) for viduq1_img2video: POST /model/v1/generation (the
-- {"model", "input":[{"params":{...}}]} form and the flat form), GET
-- /model/v1/generation/task/{id} with output[].content[], usage.cost and error codes
-- 8008003001..099. A callback_url gets the task JSON, unsigned (Vtrix documents no signature).
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local json = require("vidu.emulator.json")
local util = require("vidu.emulator.util")
local image = require("vidu.emulator.image")

local P = { name = "vtrix", prefixes = { "/model/" } }

local MODEL = "viduq1_img2video"
local AMPLITUDES = { "auto", "small", "medium", "large" }
local E_MISSING_IMAGE, E_INVALID_PARAM, E_INVALID_IMAGE = 8008003001, 8008003002, 8008003004
local E_FAILED, E_UNAVAILABLE = 8008003098, 8008003099
local STATUS = { created = "in_progress", queued = "in_progress", running = "in_progress",
  succeeded = "completed", failed = "failed", moderated = "failed", canceled = "failed" }
local PRICE = "0.40"

-- Error codes are numbers on the viduq1 page (the seed) and strings on the Vtrix Veo and
-- domestic Vidu pages ("002014001", whose leading zeros a number cannot hold). Decision:
-- numbers, as the page of this model has them; config vtrix_string_codes = true writes every
-- code (task errors and error answers) as a string.
local function code_of(app, code)
  if app and app.config.vtrix_string_codes and type(code) == "number" then
    return string.format("%d", code)
  end
  return code
end

local function error_json(app, code, message)
  code = code_of(app, code)
  return { message = message, error = { code = code, message = message, error_message = message } }
end

-- Vtrix's error table: 403 is "Insufficient balance or permission denied"; the Veo and
-- domestic pages show its body with a string code.
local E_BALANCE, BALANCE_MESSAGE = "002014001", "Insufficient balance"

--- Vtrix's error shape: headers, body for an HTTP status and message (and its code). A 403
-- (a fault with status 403) is the balance answer {"error":{"code":"002014001","message":
-- "Insufficient balance"}}, whatever the message.
function P.error_body(app, status, message, code)
  local h = { ["Content-Type"] = "application/json" }
  if status == 403 then
    return h, json.encode({ error = { code = E_BALANCE, message = BALANCE_MESSAGE } })
  end
  if status == 503 then code = code or E_UNAVAILABLE end
  return h, json.encode(error_json(app, code or status, message or "error"))
end

local function fail(app, res, status, code, message)
  local h, b = P.error_body(app, status, message, code)
  return res:send(status, h, b)
end

local AUTH_ERRORS = { missing = "missing Authorization header", scheme = "invalid Authorization header",
  empty = "invalid Authorization header", denied = "invalid api key" }

local function authorize(app, req, res)
  local key, why = util.authorize(app, req, "vtrix", "Bearer")
  if not key then fail(app, res, 401, 401, AUTH_ERRORS[why]) end
  return key
end

-- Accept {"model", "input":[{"params":{...}}]} and the flat form -> model, params | nil, err
local function unwrap(b)
  if b.input ~= nil then
    if type(b.input) ~= "table" or type(b.input[1]) ~= "table" or type(b.input[1].params) ~= "table" then
      return nil, "input must be [{\"params\": {...}}]"
    end
    local params = b.input[1].params
    return b.model or params.model, params
  end
  return b.model, b
end

local function validate(app, b)
  local model, params = unwrap(b)
  if not model then
    if params == nil then return nil, E_INVALID_PARAM, "Invalid parameter value: " .. tostring(params) end
    return nil, E_INVALID_PARAM, "Invalid parameter value: model is required"
  end
  if not params then return nil, E_INVALID_PARAM, "Invalid parameter value: " .. model end
  if model ~= MODEL then return nil, E_INVALID_PARAM, "Invalid parameter value: model must be " .. MODEL end
  local imgs = params.images
  if imgs == nil or (type(imgs) == "table" and #imgs == 0) then
    return nil, E_MISSING_IMAGE, "Missing image"
  end
  if type(imgs) ~= "table" or #imgs ~= 1 or type(imgs[1]) ~= "string" then
    return nil, E_INVALID_PARAM, "Invalid parameter value: images must hold exactly 1 image"
  end
  local got, _, msg = app.media:resolve(imgs[1])
  if not got then return nil, E_INVALID_IMAGE, "Invalid image: " .. msg end
  if got.bytes then
    if #got.bytes > 50 * 1024 * 1024 then return nil, E_INVALID_IMAGE, "Invalid image: larger than 50MB" end
    local w, h = got.info.width, got.info.height
    if w == 0 or h == 0 or w / h > 4 or h / w > 4 then
      return nil, E_INVALID_IMAGE,
        string.format("Invalid image: aspect ratio %dx%d is outside 1:4 .. 4:1", w, h)
    end
  end
  local function bad(what) return nil, E_INVALID_PARAM, "Invalid parameter value: " .. what end
  if params.prompt ~= nil and (type(params.prompt) ~= "string" or image.char_len(params.prompt) > 2000) then
    return bad("prompt must be a string of at most 2000 characters")
  end
  if params.duration ~= nil and util.as_int(params.duration, true) ~= 5 then
    return bad("duration must be 5")
  end
  if params.resolution ~= nil and params.resolution ~= "1080p" then return bad("resolution must be 1080p") end
  local amp = params.movement_amplitude
  if amp == nil then amp = "auto" end
  if not util.one_of(amp, AMPLITUDES) then
    return bad("movement_amplitude must be auto, small, medium or large")
  end
  if params.seed ~= nil and not util.as_int(params.seed, true) then return bad("seed must be an integer") end
  for _, f in ipairs({ "audio", "is_rec", "bgm", "off_peak", "watermark" }) do
    if params[f] ~= nil and type(params[f]) ~= "boolean" then return bad(f .. " must be a boolean") end
  end
  for _, f in ipairs({ "voice_id", "wm_url", "payload", "callback_url" }) do
    if params[f] ~= nil and type(params[f]) ~= "string" then return bad(f .. " must be a string") end
  end
  if params.payload and #params.payload > 1048576 then return bad("payload exceeds 1048576 characters") end
  if params.wm_position ~= nil then
    local p = util.as_int(params.wm_position, true)
    if not p or p < 1 or p > 4 then return bad("wm_position must be 1, 2, 3 or 4") end
  end
  local cb = params.callback_url or b.callback_url
  if cb == "" then cb = nil end
  if cb and not cb:match("^https?://") then return bad("callback_url must be an http(s) URL") end
  return { model = model, prompt = params.prompt or "", duration = 5, resolution = "1080p",
    movement_amplitude = amp, seed = params.seed, payload = params.payload, callback_url = cb }, got
end

local function task_json(app, task, stage)
  local st = STATUS[stage]
  local t = { id = task.id, task_id = task.id, status = st, model = MODEL,
    created_at = util.iso_time(task.created_wall), progress = app.tasks:fraction(task), metadata = {} }
  if st == "completed" then
    t.progress = 1
    t.output = json.array({ { content = json.array({ { type = "video", duration = 5,
      url = app:media_link(task.video_url), jobId = task.job_id, id = task.job_id } }) } })
    t.usage = { cost = PRICE, discount = 0, quantity = 1, unit_price = PRICE }
  elseif st == "failed" then
    local msg = "Generation failed"
    if stage == "moderated" then msg = "Generation failed: the content was flagged by content moderation" end
    if stage == "canceled" then msg = "Generation failed: the task was canceled" end
    t.error = { code = code_of(app, E_FAILED), message = msg, error_message = msg }
  end
  if task.input.payload then t.metadata.payload = task.input.payload end
  return t
end

--- Sends the task's callback on a final stage (completed or failed), when it has one.
function P.on_change(app, task, _, new)
  if not task.callback_url or STATUS[new] == "in_progress" then return end
  app.webhooks:send{ provider = "vtrix", task_id = task.id, url = task.callback_url, event = STATUS[new],
    body = json.encode(task_json(app, task, new)), attempts = 4 }
end

--- Adds Vtrix's routes (generation submit and status) to router r.
function P.routes(app, r)
  r:add("POST", "/model/v1/generation", function(req, res)
    local key = authorize(app, req, res)
    if not key then return end
    local b = json.decode(req.body)
    if type(b) ~= "table" then
      return fail(app, res, 400, E_INVALID_PARAM, "Invalid parameter value: body must be a JSON object")
    end
    local input, code, msg = validate(app, b)
    if not input then return fail(app, res, 400, code, msg) end
    local got = code
    local job = app.media:job(got.bytes, 5, input.movement_amplitude)
    local task = app.tasks:create("vtrix", { id = app:new_id("hex", 24), key = key, input = input,
      callback_url = input.callback_url, job_id = app:new_id("hex", 16), video_url = app.media:video_url(job),
      cover_url = app.media:cover_url(job) }, input.callback_url ~= nil)
    return app:json(res, 200, { id = task.id, task_id = task.id, status = "in_progress", model = MODEL,
      created_at = util.iso_time(task.created_wall), progress = 0 })
  end)

  r:add("GET", "/model/v1/generation/task/{}", function(req, res, id)
    local key = authorize(app, req, res)
    if not key then return end
    local task = app.tasks:owned(id, "vtrix", key)
    if not task then return fail(app, res, 404, 404, "task " .. id .. " not found") end
    return app:json(res, 200, task_json(app, task, app.tasks:poll(task)))
  end)
end

return P
