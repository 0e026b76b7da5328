--- The offline emulator: the wire contracts of fal, Vidu, WaveSpeed, Vtrix and Vidu relays
-- on one loopback port, with faults, a request log and a control API under /_emulator/.
--
--   local emulator = require("vidu.emulator")
--   local app = assert(emulator.start{ port = 0, seed = 1, config = { polls = 2 } })
--   print(app.url); require("luv").run()
-- luacheck: ignore 212/self
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local uv = require("luv")
local http = require("vidu.emulator.http")
local json = require("vidu.emulator.json")
local rng = require("vidu.emulator.rng")
local util = require("vidu.emulator.util")
local router = require("vidu.emulator.router")
local tasks = require("vidu.emulator.tasks")
local faults = require("vidu.emulator.faults")
local reqlog = require("vidu.emulator.log")
local media = require("vidu.emulator.media")
local webhook = require("vidu.emulator.webhook")
local sign = require("vidu.emulator.sign")
local control = require("vidu.emulator.control")
local uploads = require("vidu.emulator.uploads")

local M = {}

-- The providers it emulates: the client's own registry (vidu.providers).
M.PROVIDERS = require("vidu.providers").names

--- Run-level defaults; a config file, the command line and POST /_emulator/config override them.
M.DEFAULTS = {
  progress = "polls",        -- "polls" | "time"
  polls = 3,                 -- polls until done ("polls" progress)
  seconds = 3,               -- seconds until done ("time" progress, and webhook/sync tasks)
  outcome = "success",       -- "success" | "failed" | "moderated" | "nsfw"
  webhook_retry_delay = 0.5, -- first retry delay (s), doubled each time
  webhook_timeout = 10,
  webhook_bad_signature = false, -- knobs for receivers' tests: see webhook.lua
  webhook_stale = 0,
  webhook_duplicate = false,
  webhook_out_of_order = false,
  sync_timeout = 60,         -- WaveSpeed enable_sync_mode: longest wait before answering
  stream_interval = 0.2,     -- fal status/stream: seconds between events
  -- fal status/stream, for clients' fallback tests: "serve" (events until COMPLETED),
  -- "refuse" (404 with fal's error body), "json" (200 with the plain status JSON, not an event
  -- stream), "silent" (the 200 event-stream head, then nothing until the client leaves)
  fal_stream = "serve",
  fal_stream_cut_after = false, -- N: the stream's connection is closed after N events, mid-answer
  log_limit = 20000,         -- requests kept in the log (oldest dropped first)
  log_body_limit = 4194304,  -- bytes of each logged body
  ffmpeg_timeout = 120,      -- seconds an ffmpeg run may take; killed past it (bundled video served)
  -- ffmpeg = false (--no-ffmpeg): never run ffmpeg; a path: that program; unset: ffmpeg on PATH
  -- Readings of the providers where their sources differ; each is explained where it is used.
  media_ttl = false,         -- seconds media URLs stay valid (false: they never expire)
  vidu_cancel_state = "failed",      -- a canceled Vidu task's state: "failed" | "canceled"
  vidu_max_image_bytes = 10000000,   -- Vidu takes images under this many bytes
  vidu_upload_refuse_at = "finish",  -- where an upload that is too large is refused
  vidu_tasks_list = "on",            -- GET /ent/v2/tasks: "on" | "no_state" | "absent" (404)
  fal_retryable_header = "omit",     -- X-Fal-Retryable on failed results: "omit"|"false"|"true"
  fal_min_start_timeout = 0.1,       -- X-Fal-Request-Timeout must be above this
  fal_start_timeout_type = "request_timeout", -- error_type of an expired start timeout
  vtrix_string_codes = false,        -- Vtrix error codes as strings
}

local App = {}
App.__index = App

local function merge_config(base, over)
  local c = util.copy(base)
  for k, v in pairs(over or {}) do
    if k ~= "faults" then c[k] = v end
  end
  return c
end

--- Encode and send a JSON answer.
function App:json(res, status, tbl, headers)
  local h = headers or {}
  h["Content-Type"] = h["Content-Type"] or "application/json"
  return res:send(status, h, json.encode(tbl))
end

--- A random id of a given style: "uuid", "digits" (n), "hex" (n).
function App:new_id(style, n)
  if style == "uuid" then return self.rng:uuid() end
  if style == "digits" then return self.rng:digits(n or 18) end
  return self.rng:hex(n or 32)
end

--- Reset to a clean state with `cfg` over the start-up configuration.
function App:reset(cfg)
  self.config = merge_config(self.base_config, cfg)
  self.tasks:clear()
  self.faults:clear()
  self.log:clear()
  self.log.limit = tonumber(self.config.log_limit) or 20000
  self.log.body_limit = tonumber(self.config.log_body_limit) or self.log.body_limit
  self.webhooks:clear()
  self.media:clear()
  self.rng = rng.new(self.seed)
  self.faults.seed = self.seed
  for _, f in ipairs((cfg and cfg.faults) or self.base_config.faults or {}) do self.faults:add(f) end
end

--- Merge run-level settings.
function App:configure(cfg)
  self.config = merge_config(self.config, cfg)
  if cfg.log_limit then self.log.limit = tonumber(cfg.log_limit) or self.log.limit end
  if cfg.log_body_limit then self.log.body_limit = tonumber(cfg.log_body_limit) or self.log.body_limit end
end

--- A media URL as handed out now: signed to expire after config media_ttl seconds, or
-- unchanged when media_ttl is not set (see media.lua).
function App:media_link(url)
  local ttl = self.config.media_ttl
  if type(ttl) ~= "number" then ttl = nil end
  return self.media:link(url, ttl, util.now())
end

--- Called by the task store on every stage change: providers send their callbacks.
function App:on_change(task, old, new)
  local p = self.providers[task.provider]
  if p and p.on_change then p.on_change(self, task, old, new) end
end

--- Which provider a path belongs to (for error shapes of faults and unknown routes).
function App:provider_for(path)
  for _, name in ipairs(M.PROVIDERS) do
    local p = self.providers[name]
    for _, prefix in ipairs(p.prefixes or {}) do
      if path:sub(1, #prefix) == prefix then return p end
    end
  end
  return nil
end

--- An error answer in the shape of the provider that owns the path.
function App:error_answer(res, path, status, message, extra_headers)
  local p = self:provider_for(path)
  local headers, body
  if p and p.error_body then
    headers, body = p.error_body(self, status, message)
  else
    headers, body = { ["Content-Type"] = "application/json" }, json.encode({ error = message })
  end
  for k, v in pairs(extra_headers or {}) do headers[k] = v end
  return res:send(status, headers, body)
end

-- The response object handed to routes: records the status in the log entry and applies the
-- faults that act on the answer (reset_after, truncate, malformed_json).
local Reply = {}
Reply.__index = Reply

--- Sends a whole answer, applying a reset_after, malformed_json or truncate fault.
function Reply:send(status, headers, body)
  self.entry.status = status
  local f = self.fault
  local res = self.res
  if f then
    if f.kind == "reset_after" then return res:reset() end
    if f.kind == "malformed_json" then
      body = f.body or ((body and #body > 1) and body:sub(1, math.floor(#body / 2)) or "{\"status\":")
      headers = headers or {}
      headers["Content-Type"] = "application/json"
      headers["content-type"] = nil
    elseif f.kind == "truncate" and not res.head_only and body and #body > 0 then
      local h = headers or {}
      h["Content-Length"] = tostring(#body)
      h["content-length"] = nil
      res:stream(status, h)
      res:write(body:sub(1, math.floor(#body / 2)))
      return res:close_now()
    end
  end
  return res:send(status, headers, body)
end

--- Starts a streamed answer (a reset_after fault resets the connection instead).
function Reply:stream(status, headers)
  self.entry.status = status
  if self.fault and self.fault.kind == "reset_after" then
    self.dead = true
    return self.res:reset()
  end
  return self.res:stream(status, headers)
end

--- Writes a chunk of a streamed answer (nothing once the answer is done or reset).
function Reply:write(chunk)
  if self.dead or self.res.done then return end
  return self.res:write(chunk)
end

--- Ends a streamed answer (a truncate fault closes the connection instead).
function Reply:finish()
  if self.dead or self.res.done then return end
  if self.fault and self.fault.kind == "truncate" then return self.res:close_now() end
  return self.res:finish()
end

--- Resets the connection without an answer.
function Reply:reset() return self.res:reset() end
--- Closes the connection now (FIN), mid-answer: a streamed answer is cut short.
function Reply:close_now()
  self.dead = true
  return self.res:close_now()
end
--- Never answers: keeps the connection open and silent.
function Reply:hang() return self.res:hang() end
--- Calls fn after ms milliseconds, unless the connection has gone.
function Reply:after(ms, fn) return self.res:after(ms, fn) end

--- True when the client has gone.
function Reply:closed()
  return self.res.conn.closed
end

--- Routes a provider request: its handler, or the provider's own 404 or 405 answer.
function App:dispatch(req, reply)
  local fn, caps = self.router:find(req.method, req.path)
  if fn then
    return fn(req, reply, router.unpack(caps))
  end
  if caps then
    return self:error_answer(reply, req.path, 405, "method not allowed", { Allow = table.concat(caps, ", ") })
  end
  return self:error_answer(reply, req.path, 404, "not found: " .. req.path)
end

--- Every request comes through here.
function App:handle(req, res)
  if req.path:sub(1, 11) == "/_emulator/" then
    return control.handle(self, req, res)
  end
  local entry = self.log:add(req, util.now())
  local fault = self.faults:take(req.method, req.path)
  local reply = setmetatable({ res = res, entry = entry, req = req, head_only = res.head_only }, Reply)
  if fault then
    entry.fault = fault.kind
    local kind = fault.kind
    if kind == "reset_before" then
      entry.status = "reset"
      return res:reset()
    elseif kind == "hang" then
      entry.status = "hang"
      return res:hang()
    elseif kind == "html_502" then
      entry.status = fault.status
      return res:send(fault.status, { ["Content-Type"] = "text/html", Server = "nginx" },
        fault.body or faults.HTML_502)
    elseif kind == "status" then
      entry.status = fault.status
      local extra = util.copy(fault.headers)
      if fault.retry_after then extra["Retry-After"] = fault.retry_after end
      if fault.body then
        extra["Content-Type"] = extra["Content-Type"] or "application/json"
        return res:send(fault.status, extra, fault.body)
      end
      return self:error_answer(res, req.path, fault.status, "injected fault", extra)
    elseif kind == "latency" then
      return res:after(fault.latency_ms, function()
        if not res.conn.closed then self:dispatch(req, reply) end
      end)
    else
      reply.fault = fault
    end
  end
  return self:dispatch(req, reply)
end

local function scratch_dir()
  local base = uv.os_tmpdir() or "/tmp"
  local dir = uv.fs_mkdtemp(base .. "/vidu-emulator-XXXXXX")
  return dir or base
end

--- Create and start the emulator. opts: host, port, seed, config (table). -> app | nil, err
function M.start(opts)
  opts = opts or {}
  local app = setmetatable({ seed = opts.seed or 1 }, App)
  app.base_config = merge_config(M.DEFAULTS, opts.config)
  app.base_config.faults = opts.config and opts.config.faults
  app.config = merge_config(app.base_config, nil)
  app.rng = rng.new(app.seed)
  app.dir = scratch_dir()
  app.tasks = tasks.new(app)
  app.faults = faults.new(app.seed)
  app.log = reqlog.new(tonumber(app.config.log_limit), tonumber(app.config.log_body_limit))
  app.webhooks = webhook.new(app)
  app.router = router.new()
  app.providers = {}
  local srv, err = http.server{ host = opts.host or "127.0.0.1", port = opts.port or 0,
    handler = function(req, res) return app:handle(req, res) end }
  if not srv then return nil, err end
  app.server = srv
  app.url = srv.url
  local vcfg = app.config.video or {}
  -- Not `x == false and false or nil`: that is always nil, which once made --no-ffmpeg a no-op.
  local ffmpeg
  if app.config.ffmpeg == false then
    ffmpeg = false
  elseif type(app.config.ffmpeg) == "string" then
    ffmpeg = app.config.ffmpeg
  end
  app.media = media.new{ dir = app.dir, base_url = app.url, fps = vcfg.fps, size = vcfg.size,
    ffmpeg = ffmpeg, timeout = tonumber(app.config.ffmpeg_timeout) }
  app.signing_key = sign.available() and sign.ed25519_keygen(app.dir) or nil
  for _, name in ipairs(M.PROVIDERS) do
    local p = require("vidu.emulator.providers." .. name)
    app.providers[name] = p
    p.routes(app, app.router)
  end
  uploads.routes(app, app.router)
  app.router:add("GET", "/media/{}/{}", function(req, res, kind, file)
    local key = file:match("^([%w%-_]+)")
    if not key or not (kind == "v" or kind == "c" or kind == "u") then
      return res:send(404, { ["Content-Type"] = "text/plain" }, "not found\n")
    end
    if kind ~= "u" then
      local ttl = app.config.media_ttl
      if not app.media:check_link(req, res, type(ttl) == "number" and ttl or nil, util.now()) then return end
    end
    return app.media:serve(req, res, kind, key)
  end)
  app.router:add("GET", "/media/u/{}/{}", function(req, res, key)
    return app.media:serve(req, res, "u", key)
  end)
  for _, f in ipairs(app.base_config.faults or {}) do app.faults:add(f) end
  return app
end

--- Stop serving and remove scratch files.
function App:close()
  if self.closed then return end
  self.closed = true
  self.tasks:clear()
  self.webhooks:clear()
  self.server:close()
  self.media:close()
  if self.signing_key then os.remove(self.signing_key.pem) end
  uv.fs_rmdir(self.dir)
end

M.App = App
return M
