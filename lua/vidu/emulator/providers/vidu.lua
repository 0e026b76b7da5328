--- Vidu's own API (api.vidu.com, ent/v2): img2video, creations, cancel, the three-step upload,
-- callbacks signed with HMAC-SHA256 X-HMAC-* headers. `make` also builds the relay flavour
-- (/vidu/v2/..., Bearer auth, more models, no cancel).
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local json = require("vidu.emulator.json")
local util = require("vidu.emulator.util")
local image = require("vidu.emulator.image")
local sign = require("vidu.emulator.sign")
local uploads = require("vidu.emulator.uploads")
local http = require("vidu.emulator.http")

local M = {}

local REASONS = { [400] = "BadRequest", [401] = "Unauthorized", [403] = "Forbidden",
  [404] = "NotFound", [409] = "Conflict", [429] = "TooManyRequests", [499] = "Canceled",
  [500] = "InternalServiceFailure", [503] = "ServiceUnavailable" }

local AMPLITUDES = { "auto", "small", "medium", "large" }

-- Model rules: the client's own table (vidu.providers.vidu_models), so the emulator refuses
-- exactly what the client's validation refuses: per model its durations (a list, or a range),
-- its resolutions (per duration, or any_resolution for every duration) and default, and its
-- prompt limit. The sources of each rule are written next to it in that table.
local models = require("vidu.providers.vidu_models")
M.models = models

local CREDITS_PER_S = { ["360p"] = 1, ["540p"] = 2, ["720p"] = 2.5, ["1080p"] = 5 }
local WM_POSITIONS = { "top_left", "top_right", "bottom_right", "bottom_left" }

local STATE = { created = "created", queued = "queueing", running = "processing",
  succeeded = "success", failed = "failed", moderated = "failed", canceled = "failed" }
local ERR_CODE = { failed = "InternalServiceFailure", moderated = "CreationPolicyViolation",
  canceled = "UserCancelled" }
M.STATE, M.ERR_CODE = STATE, ERR_CODE

--- Vidu's state for an emulator stage. A task canceled through POST .../cancel reads, by
-- default, state "failed" with err_code "UserCancelled": the ent/v2 get-generation page lists
-- five states (created, queueing, processing, success, failed) and the error-code page has
-- UserCancelled ("User manually terminated task execution"). Vidu's own skills doc (vidu-skills
-- references/errors_and_retry.md, the consumer API) makes "canceled" a terminal state of its
-- own: config vidu_cancel_state = "canceled" answers that instead (err_code stays
-- "UserCancelled", so a client that reads either sees the cancellation).
function M.state(app, stage)
  if stage == "canceled" and app.config.vidu_cancel_state == "canceled" then return "canceled" end
  return STATE[stage]
end

-- Vidu's `progress` (0..100; ComfyUI's Vidu proxy schema TaskStatusResponse has progress:
-- float): 0 until the task runs, then rising with its polls or time, 100 on success; a task
-- that fails or is canceled keeps the last value it showed.
local function progress(app, task, stage)
  if stage == "succeeded" then return 100 end
  if stage == "running" then
    local p = math.floor(app.tasks:fraction(task) * 100)
    if p < 1 then p = 1 elseif p > 99 then p = 99 end
    if p < (task.progress_shown or 0) then p = task.progress_shown end
    task.progress_shown = p
    return p
  end
  return task.progress_shown or 0
end

local function keys_sorted(t)
  local k = {}
  for name in pairs(t) do k[#k + 1] = name end
  table.sort(k)
  return table.concat(k, ", ")
end

-- Image size. platform.vidu.com/docs/image-upload: uploaded images must be "less than 10MB";
-- the older image-to-video page: a base64 image must be "under 10MB" decoded (newer pages
-- give a 20 MB POST body instead; the stricter reading is kept). Decision: 10 MB is read as
-- 10,000,000 bytes (the client's MB, and the stricter of the two readings); config
-- vidu_max_image_bytes = 10485760 gives the binary reading. An image of that size or more is
-- refused, inline or uploaded.
M.MAX_IMAGE_BYTES = 10000000

--- The largest image Vidu takes inline or through its upload API, plus one (config
-- vidu_max_image_bytes, default 10,000,000).
function M.image_limit(app)
  return tonumber(app.config.vidu_max_image_bytes) or M.MAX_IMAGE_BYTES
end

-- Does `rule` make videos of `d` seconds (a listed duration, or one within its range)?
local function duration_ok(rule, d)
  if rule.duration_range then return d >= rule.duration_range[1] and d <= rule.duration_range[2] end
  return util.one_of(d, rule.durations)
end

-- The durations of `rule` for an error message: "4, 8" or "1..16".
local function durations_text(rule)
  if rule.duration_range then return rule.duration_range[1] .. ".." .. rule.duration_range[2] end
  return table.concat(rule.durations, ", ")
end

--- Build a provider table. opts: name, base ("/ent/v2" or "/vidu/v2"), scheme ("Token"|"Bearer"),
-- rules, cancel (bool), uploads (bool), list (bool: GET {base}/tasks), auth_style
-- ("vidu"|"newapi").
function M.make(opts)
  local P = { name = opts.name }
  P.prefixes = opts.prefixes

  --- Vidu's error shape (a relay's "new-api" shape for a 401): headers, body.
  function P.error_body(app, status, message, reason)
    if status == 401 and opts.auth_style == "newapi" then
      return { ["Content-Type"] = "application/json" }, json.encode({ error = {
        message = message or "invalid token", type = "new_api_error", code = "invalid_api_key" } })
    end
    return { ["Content-Type"] = "application/json" }, json.encode({
      code = status,
      reason = reason or REASONS[status] or (status >= 500 and "InternalServiceFailure" or "BadRequest"),
      message = message or "", metadata = { trace_id = app:new_id("hex", 32) } })
  end

  local function fail(app, res, status, reason, message)
    local headers, body = P.error_body(app, status, message, reason)
    return res:send(status, headers, body)
  end

  local auth_errors = { missing = "missing Authorization header", denied = "invalid api key",
    scheme = "Authorization must be \"" .. opts.scheme .. " <api key>\"" }
  auth_errors.empty = auth_errors.scheme

  local function authorize(app, req, res)
    local key, why = util.authorize(app, req, P.name, opts.scheme)
    if not key then fail(app, res, 401, "Unauthorized", auth_errors[why]) end
    return key
  end

  local function credits(input)
    return math.floor(input.duration * (CREDITS_PER_S[input.resolution] or 2) + 0.5)
  end

  -- Validate a submit body -> input | nil, status, reason, message
  local function validate(app, b)
    local rules = opts.rules
    if b.model == nil then return nil, 400, "FieldLacking", "model is required" end
    if type(b.model) ~= "string" then return nil, 400, "FieldInvalid", "model must be a string" end
    local rule = rules[b.model]
    if not rule then
      return nil, 400, "FieldInvalid", "model: unsupported value \"" .. b.model .. "\", accepted: "
        .. keys_sorted(rules)
    end
    if b.images == nil then return nil, 400, "FieldLacking", "images is required" end
    if type(b.images) ~= "table" then
      return nil, 400, "FieldInvalid", "images must be an array of strings"
    end
    if #b.images ~= 1 then
      return nil, 400, "FieldItemCountOutOfRange", "images: exactly 1 image is accepted, got " .. #b.images
    end
    local img = b.images[1]
    if type(img) ~= "string" then return nil, 400, "FieldInvalid", "images[0] must be a string" end
    local got, why, msg = app.media:resolve(img)
    if not got then
      if why == "missing" then return nil, 400, "ImageDownloadFailure", msg end
      if why == "invalid" then return nil, 400, "FieldInvalid", "images[0]: " .. msg end
      return nil, 400, "ImageFormatInvalid", "images[0]: " .. msg
    end
    if got.bytes then
      local limit = M.image_limit(app)
      if got.source == "data" and #got.bytes >= limit then
        return nil, 400, "PageSizeOutOfRange", "images[0]: the base64 decoded image must be under 10MB"
      end
      -- Reachable with vidu_upload_refuse_at = "submit" only: otherwise the upload never
      -- got its ssupload: URI.
      if got.source == "upload" and #got.bytes >= limit then
        return nil, 400, "PageSizeOutOfRange", "images[0]: the uploaded image must be less than 10MB"
      end
      if #got.bytes > 50 * 1024 * 1024 then
        return nil, 400, "PageSizeOutOfRange", "images[0]: images are limited to 50MB"
      end
      local w, h = got.info.width, got.info.height
      if w == 0 or h == 0 or w / h > 4 or h / w > 4 then
        return nil, 400, "PageSizeOutOfRange",
          string.format("images[0]: aspect ratio %dx%d is outside 1:4 .. 4:1", w, h)
      end
    end
    if b.prompt ~= nil then
      if type(b.prompt) ~= "string" then return nil, 400, "FieldInvalid", "prompt must be a string" end
      -- Each model's own limit (1500 for Q1 and 2.0, 2000 for Q2, 5000 for Q3).
      local max = rule.prompt_max or opts.prompt_max or 1500
      if image.char_len(b.prompt) > max then
        return nil, 400, "FieldInvalid", "prompt exceeds " .. max .. " characters"
      end
    end
    local duration = rule.default_duration
    if b.duration ~= nil then
      duration = util.as_int(b.duration, true)
      if not duration then return nil, 400, "FieldInvalid", "duration must be an integer" end
    end
    if not duration_ok(rule, duration) then
      return nil, 400, "FieldInvalid", string.format("duration %d is not supported by %s (accepted: %s)",
        duration, b.model, durations_text(rule))
    end
    local allowed = rule.any_resolution or rule.resolutions[duration]
    local resolution = models.default_resolution(rule, duration)
    if b.resolution ~= nil then
      if type(b.resolution) ~= "string" or not util.one_of(b.resolution, allowed) then
        return nil, 400, "FieldInvalid",
          string.format("resolution %s is not supported by %s at %ds (accepted: %s)",
          tostring(b.resolution), b.model, duration, table.concat(allowed, ", "))
      end
      resolution = b.resolution
    end
    local seed
    if b.seed ~= nil then
      seed = util.as_int(b.seed, true)
      if not seed then return nil, 400, "FieldInvalid", "seed must be an integer" end
    end
    if seed == nil or seed == 0 then seed = app.rng:int(1, 2147483646) end
    local amp = b.movement_amplitude
    if amp == nil then amp = "auto" end
    if not util.one_of(amp, AMPLITUDES) then
      return nil, 400, "FieldInvalid", "movement_amplitude must be one of auto, small, medium, large"
    end
    for _, f in ipairs({ "bgm", "off_peak", "watermark", "is_rec", "audio" }) do
      if b[f] ~= nil and type(b[f]) ~= "boolean" then
        return nil, 400, "FieldInvalid", f .. " must be a boolean"
      end
    end
    for _, f in ipairs({ "payload", "callback_url", "wm_url", "meta_data", "voice_id" }) do
      if b[f] ~= nil and type(b[f]) ~= "string" then
        return nil, 400, "FieldInvalid", f .. " must be a string"
      end
    end
    if b.payload and #b.payload > 1048576 then
      return nil, 400, "FieldInvalid", "payload exceeds 1048576 characters"
    end
    if b.callback_url and b.callback_url ~= "" and not b.callback_url:match("^https?://") then
      return nil, 400, "FieldInvalid", "callback_url must be an http(s) URL"
    end
    local wm = 3
    if b.wm_position ~= nil then
      wm = util.as_int(b.wm_position, true)
      if not wm or wm < 1 or wm > 4 then
        return nil, 400, "FieldInvalid", "wm_position must be 1, 2, 3 or 4"
      end
    end
    return {
      model = b.model, images = json.array({ img }), prompt = b.prompt or "", duration = duration,
      resolution = resolution, seed = seed, movement_amplitude = amp, bgm = b.bgm or false,
      payload = b.payload or "", off_peak = b.off_peak or false, watermark = b.watermark or false,
      is_rec = b.is_rec or false, wm_position = WM_POSITIONS[wm], wm_url = b.wm_url or "",
      meta_data = b.meta_data or "", callback_url = b.callback_url,
    }, got
  end

  -- The GET creations body (also the callback body). Media URLs are signed afresh each time
  -- when config media_ttl is set.
  local function creations_body(app, task, stage)
    local creations = json.array()
    if stage == "succeeded" then
      local c = { id = task.creation_id, url = app:media_link(task.video_url),
        cover_url = app:media_link(task.cover_url) }
      if task.input.watermark then c.watermarked_url = app:media_link(task.video_url .. "?watermark=1") end
      creations[1] = c
    end
    return {
      id = task.id, state = M.state(app, stage), err_code = ERR_CODE[stage] or "", credits = task.credits,
      progress = progress(app, task, stage),
      payload = task.input.payload, bgm = task.input.bgm, off_peak = task.input.off_peak,
      creations = creations,
    }
  end

  local function submit(app, req, res)
    local key = authorize(app, req, res)
    if not key then return end
    local b = json.decode(req.body)
    if type(b) ~= "table" then
      return fail(app, res, 400, "BadRequest", "request body must be a JSON object")
    end
    local input, status, reason, message = validate(app, b)
    if not input then return fail(app, res, status, reason, message) end
    local got = status
    local job = app.media:job(got.bytes, input.duration, input.movement_amplitude)
    local cb = input.callback_url
    if cb == "" then cb = nil end
    local task = app.tasks:create(P.name, {
      id = app:new_id("digits", 18), key = key, input = input, callback_url = cb,
      video_url = app.media:video_url(job), cover_url = app.media:cover_url(job),
      creation_id = app:new_id("digits", 18), credits = credits(input),
    }, cb ~= nil)
    local out = {
      task_id = task.id, type = "img2video", state = "created", model = input.model, style = "general",
      images = input.images, prompt = input.prompt, duration = input.duration, seed = input.seed,
      aspect_ratio = "", resolution = input.resolution, bgm = input.bgm,
      movement_amplitude = input.movement_amplitude, payload = input.payload, off_peak = input.off_peak,
      credits = task.credits, cus_priority = 0, watermark = input.watermark, is_rec = input.is_rec,
      wm_position = input.wm_position, wm_url = input.wm_url, meta_data = input.meta_data,
      created_at = util.iso_time(task.created_wall),
    }
    return app:json(res, 200, out)
  end

  local function find_task(app, req, res, id)
    local key = authorize(app, req, res)
    local task = key and app.tasks:owned(id, P.name, key)
    if key and not task then fail(app, res, 404, "TaskNotFound", "task " .. id .. " not found") end
    return task
  end

  local function creations(app, req, res, id)
    local task = find_task(app, req, res, id)
    if not task then return end
    local stage = app.tasks:poll(task)
    return app:json(res, 200, creations_body(app, task, stage))
  end

  -- GET {base}/tasks: many tasks in one answer (platform.vidu.com/docs/tasks-list). Filters
  -- task_ids[] and states[] (repeated keys; "task_ids" without the brackets is taken too),
  -- paging pager.pagesz (<= 100; the page spells it "paper.pagesz" once, taken too) and
  -- pager.page_token (here an opaque offset), answer { next_page_token, tasks }. The page
  -- shows each entry's id, model, prompt, duration, resolution and creations; that an entry
  -- carries state, err_code and credits as GET .../creations does is not confirmed: here it
  -- does (config vidu_tasks_list = "no_state" leaves state and err_code out, "absent"
  -- answers 404 as a server without the route would). Only the caller's key's tasks are
  -- listed; an id that is not one of them is left out, not an error. A task named in
  -- task_ids and answered counts as a poll of it (progress "polls"; the states[] filter
  -- looks at the stage before that poll).
  local DEFAULT_PAGESZ = 20 -- not documented; the emulator's reading
  local function multi_query(q)
    local t = {}
    for pair in (q or ""):gmatch("[^&]+") do
      local k, v = pair:match("^([^=]*)=(.*)$")
      if not k then k, v = pair, "" end
      k, v = http.unescape(k), http.unescape(v)
      k = k:gsub("%[%]$", "")
      local list = t[k]
      if not list then list = {} t[k] = list end
      list[#list + 1] = v
    end
    return t
  end

  local function list_entry(app, task, stage)
    local e = creations_body(app, task, stage)
    local input = task.input
    e.model, e.prompt, e.duration, e.resolution = input.model, input.prompt, input.duration,
      input.resolution
    e.type, e.created_at = "img2video", util.iso_time(task.created_wall)
    local c = e.creations[1]
    if c then
      local w, h = 1920, 1080
      if input.resolution == "720p" then w, h = 1280, 720 elseif input.resolution == "360p" then
        w, h = 640, 360 elseif input.resolution == "540p" then w, h = 960, 540 end
      c.video = { duration = input.duration, fps = 24, resolution = { width = w, height = h } }
    end
    if app.config.vidu_tasks_list == "no_state" then e.state, e.err_code = nil, nil end
    return e
  end

  local function list_tasks(app, req, res)
    if app.config.vidu_tasks_list == "absent" then
      return app:error_answer(res, req.path, 404, "not found: " .. req.path)
    end
    local key = authorize(app, req, res)
    if not key then return end
    local q = multi_query(req.query)
    local function one(name, alt)
      local v = q[name] or (alt and q[alt])
      return v and v[1]
    end
    local pagesz = DEFAULT_PAGESZ
    local raw = one("pager.pagesz", "paper.pagesz")
    if raw ~= nil then
      pagesz = util.as_int(raw, true)
      if not pagesz then
        return fail(app, res, 400, "FieldInvalid", "pager.pagesz must be an integer")
      end
      if pagesz < 1 or pagesz > 100 then
        return fail(app, res, 400, "PageSizeOutOfRange", "pager.pagesz must be 1..100")
      end
    end
    local offset = 0
    local token = one("pager.page_token")
    if token and token ~= "" then
      offset = tonumber(token:match("^o(%d+)$") or "")
      if not offset then return fail(app, res, 400, "FieldInvalid", "pager.page_token is invalid") end
    end
    local states
    if q.states then
      states = {}
      for _, s in ipairs(q.states) do states[s] = true end
    end
    -- The candidates: the ids asked for, in the order asked (each once), or all of the key's
    -- tasks newest first.
    local list, named = {}, q.task_ids ~= nil
    if named then
      local seen = {}
      for _, id in ipairs(q.task_ids) do
        local t = not seen[id] and app.tasks:owned(id, P.name, key)
        seen[id] = true
        if t then list[#list + 1] = t end
      end
    else
      for _, t in pairs(app.tasks.by_id) do
        if t.provider == P.name and t.key == key then list[#list + 1] = t end
      end
      table.sort(list, function(a, b) return a.seq > b.seq end)
    end
    local out, matched = json.array(), 0
    local more = false
    for _, t in ipairs(list) do
      local stage = app.tasks:observe(t)
      if not states or states[M.state(app, stage)] then
        matched = matched + 1
        if matched > offset then
          if #out >= pagesz then more = true break end
          -- A task named and answered is polled, as GET .../creations polls it.
          if named then stage = app.tasks:poll(t) end
          out[#out + 1] = list_entry(app, t, stage)
        end
      end
    end
    return app:json(res, 200, { tasks = out,
      next_page_token = more and ("o" .. (offset + pagesz)) or "" })
  end

  local function cancel(app, req, res, id)
    local task = find_task(app, req, res, id)
    if not task then return end
    local stage = app.tasks:observe(task)
    if stage ~= "created" and stage ~= "queued" then
      return fail(app, res, 400, "BadRequest",
        "task state is " .. (M.state(app, stage) or stage) .. ", can not cancel")
    end
    app.tasks:cancel(task)
    return app:json(res, 200, {})
  end

  -- The Vidu callback signature over the callback URL's path and query.
  local function signer(app, task)
    return function(_, cb)
      local _, _, target = require("vidu.emulator.client").parse_url(task.callback_url)
      local path, query = (target or "/"):match("^([^?]*)%??(.*)$")
      local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", app.webhooks:timestamp())
      local nonce = app:new_id("hex", 32)
      local signing = "POST\n" .. path .. "\n" .. query .. "\nvidu\n" .. date .. "\n"
        .. "Date:" .. date .. "\n" .. "x-request-nonce:" .. nonce .. "\n"
      sign.hmac_sha256(task.key, signing, function(raw, err)
        if not raw then return cb(nil, err) end
        cb({ Date = date, ["x-request-nonce"] = nonce, ["X-HMAC-SIGNED-HEADERS"] = "Date;x-request-nonce",
          ["X-HMAC-SIGNATURE"] = image.b64encode(raw), ["X-HMAC-ALGORITHM"] = "hmac-sha256",
          ["X-HMAC-ACCESS-KEY"] = "vidu" })
      end)
    end
  end

  --- Sends the task's signed callback when it starts processing and when it finishes.
  -- "processing" is sent once, "success" and "failed" with 3 retries (the callback_url text).
  -- With the webhook_out_of_order knob, "processing" is held back and sent after the final
  -- callback is over, as a late delivery would arrive.
  function P.on_change(app, task, _, new)
    if not task.callback_url then return end
    local st = M.state(app, new)
    if st ~= "processing" and st ~= "success" and st ~= "failed" and st ~= "canceled" then return end
    local d = { provider = P.name, task_id = task.id, url = task.callback_url, event = st,
      body = json.encode(creations_body(app, task, new)), attempts = (st == "processing") and 1 or 4,
      sign = sign.available() and signer(app, task) or nil, sig_header = "X-HMAC-SIGNATURE" }
    if st == "processing" and app.webhooks:out_of_order() then
      task.held_callback = d
      return
    end
    if st ~= "processing" then
      d.after, task.held_callback = task.held_callback, nil
    end
    app.webhooks:send(d)
  end

  --- Adds the img2video, creations, cancel and upload routes this provider has to router r.
  function P.routes(app, r)
    local base = opts.base
    r:add("POST", base .. "/img2video", function(req, res) return submit(app, req, res) end)
    r:add("GET", base .. "/tasks/{}/creations", function(req, res, id)
      return creations(app, req, res, id)
    end)
    if opts.list then
      r:add("GET", base .. "/tasks", function(req, res) return list_tasks(app, req, res) end)
    end
    if opts.cancel then
      r:add("POST", base .. "/tasks/{}/cancel", function(req, res, id) return cancel(app, req, res, id) end)
    end
    if opts.uploads then
          r:add("POST", "/tools/v2/files/uploads", function(req, res)
        if not authorize(app, req, res) then return end
        local b = json.decode(req.body)
        if type(b) ~= "table" then
          return fail(app, res, 400, "BadRequest", "request body must be a JSON object")
        end
        if b.scene == nil then return fail(app, res, 400, "FieldLacking", "scene is required") end
        if b.scene ~= "vidu" then return fail(app, res, 400, "FieldInvalid", "scene must be \"vidu\"") end
        local id, put_url = uploads.reserve(app, { provider = "vidu" })
        return app:json(res, 200, { id = id, put_url = put_url,
          expires_at = util.iso_time(util.now() + 3600) })
      end)
      r:add("PUT", "/tools/v2/files/uploads/{}/finish", function(req, res, id)
        if not authorize(app, req, res) then return end
        local up = app.media:upload(id)
        if not up then return fail(app, res, 404, "NotFound", "upload " .. id .. " not found") end
        local b = json.decode(req.body)
        if type(b) ~= "table" or type(b.etag) ~= "string" then
          return fail(app, res, 400, "FieldLacking", "etag is required")
        end
        if not up.bytes then return fail(app, res, 400, "BadRequest", "nothing was uploaded to put_url") end
        if b.etag:gsub('"', "") ~= up.etag then
          return fail(app, res, 400, "FieldInvalid", "etag does not match the uploaded object")
        end
        -- Where Vidu refuses an image of 10 MB or more: at finish, by default. The create step
        -- carries no size (its body is only {"scene"}), and put_url is a pre-signed S3 PUT
        -- (its answer carries x-amz-* headers, image-upload page), which checks a signature,
        -- not a size; finish is the first request where Vidu's own service sees the stored
        -- object (it takes its etag), so it is where a limit of Vidu's can apply, in Vidu's
        -- envelope. Config vidu_upload_refuse_at = "put" (the storage refuses the PUT with
        -- S3's EntityTooLarge XML) or "submit" (finish succeeds, img2video refuses the
        -- ssupload: image) gives the other readings.
        local at = app.config.vidu_upload_refuse_at or "finish"
        if at == "finish" and #up.bytes >= M.image_limit(app) then
          return fail(app, res, 400, "PageSizeOutOfRange",
            string.format("image size %d bytes: the image must be less than 10MB", #up.bytes))
        end
        return app:json(res, 200, { uri = "ssupload:?id=" .. id })
      end)
    end
  end

  return P
end

local P = M.make{ name = "vidu", base = "/ent/v2", scheme = "Token", rules = models.vidu, cancel = true,
  uploads = true, list = true, prompt_max = 1500, auth_style = "vidu", prefixes = { "/ent/", "/tools/" } }
-- The relay builds its own flavour from these.
P.make, P.models, P.image_limit = M.make, models, M.image_limit
return P
