--- The control API under /_emulator/ (JSON in, JSON out). Control requests are not logged and
-- never hit faults.
--   POST /_emulator/reset            [config]  clean state: tasks, faults, log, webhooks, "next"
--   GET|POST /_emulator/config       [config]  run-level settings (merged)
--   POST /_emulator/next             {outcome, polls, seconds, progress, state} for the next task
--                                    (outcomes: success, failed, moderated, nsfw)
--   GET  /_emulator/tasks[?input=0]  all tasks (input=0: without each task's input, which
--                                    may hold a data: URI image: 1,000 of a photo pass 512 MB)
--   GET|POST /_emulator/tasks/{id}   one task
--   GET|POST|DELETE /_emulator/faults          list, add ({...} or [{...}]), clear
--   GET|DELETE /_emulator/log?method=&path=&match=
--   GET  /_emulator/webhooks         deliveries and their attempts (duplicate, tampered)
-- Config keys for webhook tests (webhook.lua): webhook_bad_signature, webhook_stale (s),
-- webhook_duplicate, webhook_out_of_order. Readings of the providers where their sources
-- differ (checked by check_knobs; defaults in init.lua): vidu_cancel_state,
-- vidu_max_image_bytes, vidu_upload_refuse_at, vidu_tasks_list, media_ttl, fal_retryable_header,
-- fal_min_start_timeout, fal_start_timeout_type, vtrix_string_codes. For clients' fallback
-- tests: fal_stream ("serve", "refuse", "json", "silent") and fal_stream_cut_after (N events,
-- or false), fal's status stream misbehaving (providers/fal.lua).
--   GET  /_emulator/health
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local json = require("vidu.emulator.json")
local util = require("vidu.emulator.util")
local image = require("vidu.emulator.image")

local M = {}

local function answer(app, res, status, tbl)
  return app:json(res, status, tbl)
end

local function body_table(req)
  if req.body == nil or req.body == "" then return {} end
  local v, err = json.decode(req.body)
  if type(v) ~= "table" then return nil, "body must be a JSON object: " .. tostring(err) end
  return v
end

local function nonull(t)
  if type(t) ~= "table" then return t end
  for k, v in pairs(t) do
    if v == json.null then t[k] = nil else nonull(v) end
  end
  return t
end

local function public_config(app)
  local c = {}
  for k, v in pairs(app.config) do
    if k ~= "faults" then c[k] = v end
  end
  return c
end

-- The log as JSON, which must be UTF-8: a body that is not (an image upload, any binary) is
-- given as body_base64 instead of body; header values, path and query that are not have their
-- bytes >= 0x80 written as \xNN.
local function log_view(entries)
  local out = json.array()
  for i, e in ipairs(entries) do
    local headers = {}
    for k, v in pairs(e.headers or {}) do headers[util.json_text(k)] = util.json_text(v) end
    local body, body_base64 = e.body, nil
    if body and not util.is_utf8(body) then
      body, body_base64 = nil, image.b64encode(body)
    end
    out[i] = { method = e.method, path = util.json_text(e.path), query = util.json_text(e.query),
      headers = headers, body = body, body_base64 = body_base64, time = e.time, status = e.status,
      fault = e.fault, body_truncated = e.body_truncated, body_size = e.body_size }
  end
  return out
end

-- The webhook knobs (see webhook.lua) and the vtrix_string_codes switch: booleans.
local FLAGS = { "webhook_bad_signature", "webhook_duplicate", "webhook_out_of_order",
  "vtrix_string_codes" }

-- Knobs with one of a few string values (each explained where it is used).
local CHOICES = {
  vidu_cancel_state = { "failed", "canceled" },                  -- providers/vidu.lua M.state
  vidu_upload_refuse_at = { "finish", "put", "submit" },         -- providers/vidu.lua, finish
  vidu_tasks_list = { "on", "no_state", "absent" },              -- providers/vidu.lua, list
  fal_retryable_header = { "omit", "false", "true" },            -- providers/fal.lua, result
  fal_start_timeout_type = { "request_timeout", "startup_timeout" }, -- providers/fal.lua
  fal_stream = { "serve", "refuse", "json", "silent" },          -- providers/fal.lua, stream
}

local function one_of(v, list)
  for _, x in ipairs(list) do
    if v == x then return true end
  end
  return false
end

--- Checks the knobs of a config body (webhook knobs, provider readings, media_ttl) ->
-- nil | message naming the key and what it takes.
function M.check_knobs(body)
  for _, k in ipairs(FLAGS) do
    if body[k] ~= nil and type(body[k]) ~= "boolean" then return k .. " must be true or false" end
  end
  local stale = body.webhook_stale
  if stale ~= nil and (type(stale) ~= "number" or stale < 0) then
    return "webhook_stale must be a number of seconds >= 0"
  end
  for k, list in pairs(CHOICES) do
    if body[k] ~= nil and not one_of(body[k], list) then
      return k .. " must be one of \"" .. table.concat(list, "\", \"") .. "\""
    end
  end
  local ttl = body.media_ttl
  if ttl ~= nil and ttl ~= false and (type(ttl) ~= "number" or ttl < 0) then
    return "media_ttl must be a number of seconds >= 0, or false (media URLs never expire)"
  end
  local max = body.vidu_max_image_bytes
  if max ~= nil and (type(max) ~= "number" or max < 1 or max ~= math.floor(max)) then
    return "vidu_max_image_bytes must be a whole number of bytes >= 1"
  end
  local cut = body.fal_stream_cut_after
  if cut ~= nil and cut ~= false and (type(cut) ~= "number" or cut < 0 or cut ~= math.floor(cut)) then
    return "fal_stream_cut_after must be a whole number of events >= 0, or false"
  end
  local min = body.fal_min_start_timeout
  if min ~= nil and (type(min) ~= "number" or min < 0) then
    return "fal_min_start_timeout must be a number of seconds >= 0"
  end
  return nil
end

--- Answers a request under /_emulator/ (reset, config, next, tasks, faults, log, webhooks, health).
function M.handle(app, req, res)
  local path, method = req.path, req.method
  local body, err = body_table(req)
  if not body then return answer(app, res, 400, { error = err }) end
  nonull(body)
  local sub = path:sub(12) -- after "/_emulator/"

  if sub == "reset" and method == "POST" then
    local kerr = M.check_knobs(body)
    if kerr then return answer(app, res, 400, { error = kerr }) end
    app:reset(body)
    return answer(app, res, 200, { ok = true, config = public_config(app) })
  elseif sub == "config" then
    if method == "POST" then
      if body.outcome and not require("vidu.emulator.tasks").OUTCOMES[body.outcome] then
        return answer(app, res, 400, { error = "unknown outcome " .. tostring(body.outcome) })
      end
      if body.progress and body.progress ~= "polls" and body.progress ~= "time" then
        return answer(app, res, 400, { error = "progress must be \"polls\" or \"time\"" })
      end
      local kerr = M.check_knobs(body)
      if kerr then return answer(app, res, 400, { error = kerr }) end
      app:configure(body)
    elseif method ~= "GET" then
      return answer(app, res, 405, { error = "method not allowed" })
    end
    return answer(app, res, 200, { ok = true, config = public_config(app) })
  elseif sub == "next" and method == "POST" then
    app.tasks:push_next(body)
    return answer(app, res, 200, { ok = true, queued = #app.tasks.next_queue })
  elseif sub == "tasks" and method == "GET" then
    local list = json.array()
    local inputs = req.params.input ~= "0"
    for _, t in pairs(app.tasks.by_id) do
      local d = app.tasks:describe(t)
      if not inputs then d.input = nil end
      list[#list + 1] = d
    end
    table.sort(list, function(a, b) return tostring(a.id) < tostring(b.id) end)
    return answer(app, res, 200, { tasks = list })
  elseif sub:sub(1, 6) == "tasks/" then
    local id = require("vidu.emulator.http").unescape(sub:sub(7))
    local task = app.tasks:get(id)
    if not task then return answer(app, res, 404, { error = "no such task: " .. id }) end
    if method == "POST" then
      local ok, cerr = app.tasks:control(task, body)
      if not ok then return answer(app, res, 400, { error = cerr }) end
    elseif method ~= "GET" then
      return answer(app, res, 405, { error = "method not allowed" })
    end
    return answer(app, res, 200, { ok = true, task = app.tasks:describe(task) })
  elseif sub == "faults" then
    if method == "POST" then
      local list = (body[1] ~= nil) and body or { body }
      local ids = json.array()
      for _, f in ipairs(list) do
        local rule, ferr = app.faults:add(f)
        if not rule then return answer(app, res, 400, { error = ferr }) end
        ids[#ids + 1] = rule.id
      end
      return answer(app, res, 200, { ok = true, id = ids[1], ids = ids })
    elseif method == "DELETE" then
      app.faults:clear()
      return answer(app, res, 200, { ok = true })
    end
    local list = app.faults:list()
    return answer(app, res, 200, { faults = json.array(list) })
  elseif sub == "log" then
    if method == "DELETE" then
      app.log:clear()
      return answer(app, res, 200, { ok = true })
    end
    local p = req.params
    return answer(app, res, 200, { requests = log_view(app.log:find{ method = p.method, path = p.path,
      match = p.match }) })
  elseif sub == "webhooks" then
    local list = json.array()
    for i, d in ipairs(app.webhooks.deliveries) do
      local attempts = json.array()
      for j, a in ipairs(d.attempts) do attempts[j] = a end
      list[i] = { provider = d.provider, task_id = d.task_id, url = d.url, event = d.event, ok = d.ok,
        done = d.done, attempts = attempts, body = d.body, duplicate = d.duplicate,
        tampered = d.tampered and json.array(d.tampered) }
    end
    return answer(app, res, 200, { deliveries = list })
  elseif sub == "health" then
    return answer(app, res, 200, { ok = true, url = app.url, tasks = app.tasks.count, dir = app.dir,
      connections = app.server:connections(), requests = app.server.requests,
      ffmpeg = app.media.ffmpeg ~= nil, ffmpeg_runs = app.media.runs, signing = app.signing_key ~= nil })
  end
  return answer(app, res, 404, { error = "unknown control route " .. method .. " " .. path })
end

return M
