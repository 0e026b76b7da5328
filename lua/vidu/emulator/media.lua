--- Media the emulator serves: the generated videos (real MP4s made by ffmpeg from the input
-- image, with motion following movement_amplitude and length following duration), cover
-- images, and files clients uploaded. One video per (image, duration, amplitude), made
-- asynchronously and at most `max_jobs` ffmpeg processes at a time, so a thousand tasks from one
-- image cost one ffmpeg run and the server never blocks. Each ffmpeg run has a time limit
-- (`timeout`, killed past it: the bundled video is served instead), and close() kills the runs
-- still going, so no ffmpeg outlives the emulator that started it.
-- luacheck: ignore 212/self
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local uv = require("luv")
local proc = require("vidu.emulator.proc")
local image = require("vidu.emulator.image")
local http = require("vidu.emulator.http")

local M = {}
M.__index = M

local AMPLITUDE = { small = 0.3, medium = 0.6, large = 1.0, auto = 0.6 }

local function module_dir()
  local src = debug.getinfo(1, "S").source
  local dir = src:match("^@(.*)/[^/]*$")
  return dir or "."
end

--- New media store. opts: dir (scratch directory), base_url, ffmpeg (false: none, a path, or
-- nil: the one on PATH), timeout (seconds an ffmpeg run may take, default 120), fps, size
-- (longest side in pixels), max_jobs, secret (of expiring links).
function M.new(opts)
  local self = setmetatable({
    dir = opts.dir, base_url = opts.base_url or "", fps = opts.fps or 12, size = opts.size or 640,
    max_jobs = opts.max_jobs or 2, running = 0, waiting = {}, jobs = {}, uploads = {},
    nupload = 0, assets = module_dir() .. "/assets", runs = 0, timeout = opts.timeout or 120,
    children = {}, secret = opts.secret or tostring(uv.hrtime()),
  }, M)
  if opts.ffmpeg == false then
    self.ffmpeg = nil
  else
    self.ffmpeg = opts.ffmpeg or proc.which("ffmpeg")
  end
  return self
end

--- Runs ffmpeg with args under the time limit, keeping the child so close() can kill it.
-- cb(code, stdout, stderr) as proc.run; never called once the store is closed. -> started?
function M:ffmpeg_run(args, cb)
  local child
  child = proc.run(self.ffmpeg, args, { timeout = self.timeout }, function(code, out, err)
    self.children[child] = nil
    if not self.closed then cb(code, out, err) end
  end)
  if child then self.children[child] = true end
  return child ~= nil
end

--- Forget uploads (videos stay cached: they depend only on their inputs).
function M:clear()
  self.uploads, self.nupload = {}, 0
end

local function file_exists(path)
  return uv.fs_stat(path) ~= nil
end

--- Start queued jobs while there is room.
function M:pump()
  while self.running < self.max_jobs and #self.waiting > 0 do
    local job = table.remove(self.waiting, 1)
    self.running = self.running + 1
    self:run(job, function()
      self.running = self.running - 1
      self:pump()
    end)
  end
end

local function ready(job, ok)
  job.state = "ready"
  if not ok then
    job.video, job.cover, job.fallback = job.asset_video, job.asset_cover, true
  end
  local w = job.waiters
  job.waiters = {}
  for i = 1, #w do w[i](job) end
end

-- The ffmpeg filter that animates a still: a crop window that drifts over the image.
local function motion_filter(size, amp, dur)
  local z = 1 - 0.25 * amp
  return string.format(
    "scale='if(gt(iw,ih),%d,-2)':'if(gt(iw,ih),-2,%d)',"
    .. "crop=w='2*trunc(iw*%.3f/2)':h='2*trunc(ih*%.3f/2)':"
    .. "x='(iw-ow)/2*(1+sin(2*PI*t/%d))':y='(ih-oh)/2*(1-cos(2*PI*t/%d))'",
    size, size, z, z, dur, dur)
end

--- Makes a job's video from its image (or a test pattern) and its cover with ffmpeg, then
-- marks the job ready (the bundled files stand in when ffmpeg fails) and calls done().
function M:run(job, done)
  local args = { "-nostdin", "-y", "-loglevel", "error" }
  if job.image_path then
    for _, a in ipairs({ "-loop", "1", "-framerate", tostring(self.fps), "-i", job.image_path,
      "-vf", motion_filter(self.size, job.amp, job.duration) }) do args[#args + 1] = a end
  else
    for _, a in ipairs({ "-f", "lavfi", "-i",
      string.format("testsrc2=size=480x270:rate=%d", self.fps) }) do args[#args + 1] = a end
  end
  for _, a in ipairs({ "-t", tostring(job.duration), "-c:v", "libx264", "-preset", "ultrafast",
    "-pix_fmt", "yuv420p", "-movflags", "+faststart", job.video }) do args[#args + 1] = a end
  self.runs = self.runs + 1
  local started = self:ffmpeg_run(args, function(code, _, err)
    if code ~= 0 or not file_exists(job.video) then
      io.stderr:write("vidu-emulator: ffmpeg failed (", tostring(code), "): ", err, "\n")
      os.remove(job.video) -- a killed run may leave half a file
      ready(job, false)
      return done()
    end
    local cover_started = self:ffmpeg_run({ "-nostdin", "-y", "-loglevel", "error", "-i", job.video,
      "-frames:v", "1", "-q:v", "5", job.cover }, function(ccode)
      if ccode ~= 0 then job.cover = job.asset_cover end
      if job.image_path then os.remove(job.image_path) end
      ready(job, true)
      done()
    end)
    if not cover_started then
      job.cover = job.asset_cover
      ready(job, true)
      done()
    end
  end)
  if not started then
    ready(job, false)
    done()
  end
end

--- The video for an input image (bytes or nil when the image is not at hand), a duration in
-- seconds and a movement amplitude. Returns the job (cached); its urls are known at once.
function M:job(bytes, duration, amplitude)
  duration = math.max(1, math.floor(tonumber(duration) or 5))
  local amp = AMPLITUDE[amplitude] or AMPLITUDE.auto
  local fp = bytes and image.fingerprint(bytes) or "none"
  local key = string.format("%s-%d-%s", fp, duration, amplitude or "auto")
  local job = self.jobs[key]
  if job then return job end
  job = {
    key = key, duration = duration, amp = amp, state = "pending", waiters = {},
    video = self.dir .. "/" .. key .. ".mp4", cover = self.dir .. "/" .. key .. ".jpg",
    asset_video = self.assets .. "/fallback.mp4", asset_cover = self.assets .. "/cover.jpg",
  }
  self.jobs[key] = job
  if not self.ffmpeg then
    ready(job, false)
    return job
  end
  if bytes then
    job.image_path = self.dir .. "/" .. key .. ".img"
    local f = io.open(job.image_path, "wb")
    if f then
      f:write(bytes)
      f:close()
    else
      job.image_path = nil
    end
  end
  self.waiting[#self.waiting + 1] = job
  self:pump()
  return job
end

--- Call fn(job) once the job's files exist (at once if they do).
function M:when_ready(job, fn)
  if job.state == "ready" then return fn(job) end
  job.waiters[#job.waiters + 1] = fn
end

--- The URL the video of `job` is served at.
function M:video_url(job)
  return self.base_url .. "/media/v/" .. job.key .. ".mp4"
end

--- The URL the cover of `job` is served at.
function M:cover_url(job)
  return self.base_url .. "/media/c/" .. job.key .. ".jpg"
end

-- Expiring links. Vidu's video and cover URLs are pre-signed and expire (24 h on the current
-- get-generation page, 1 h on older pages; a CN sample carried X-Amz-Expires=3600), and a
-- new GET of the task hands out fresh ones; an expired one answers as S3 does, 403 with an
-- XML AccessDenied body. fal's CDN and WaveSpeed's storage expire their media too. With
-- config media_ttl (seconds) every media URL handed out carries ?expires=<unix>&sig=<hex>;
-- without it (the default) URLs never expire, as before. The signature is a keyed checksum,
-- not cryptography: it only keeps a client from moving the expiry.

-- The checksum of a link: path and expiry under this run's secret.
local function link_sig(self, path, expires)
  return image.fingerprint(self.secret .. "\n" .. path .. "\n" .. expires)
end

--- `url` (one of ours) signed to expire `ttl` seconds from `now`: ?expires=<unix>&sig=<hex>
-- appended (whole seconds, rounded up; a ttl of 0 has expired already). Returned unchanged
-- when ttl is nil or false.
function M:link(url, ttl, now)
  if not url or not ttl then return url end
  local expires = ttl > 0 and math.ceil(now + ttl) or math.floor(now)
  local path = url:sub(#self.base_url + 1):gsub("%?.*$", "")
  return url .. (url:find("?", 1, true) and "&" or "?") .. "expires=" .. expires .. "&sig="
    .. link_sig(self, path, expires)
end

-- S3's answer to a refused GET: 403 with an XML body.
local function access_denied(req, res, message, extra)
  local body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>"
    .. message .. "</Message>" .. (extra or "") .. "<RequestId>" .. image.fingerprint(req.target or req.path)
    .. "</RequestId></Error>"
  return res:send(403, { ["Content-Type"] = "application/xml" }, body)
end

--- Checks a media GET against its link: true when it may be served, else answers 403
-- (expired, tampered, or unsigned while `ttl` is set) and returns false.
function M:check_link(req, res, ttl, now)
  local p = req.params or {}
  if p.expires == nil and p.sig == nil then
    if not ttl then return true end
    access_denied(req, res, "Request has expired")
    return false
  end
  local expires = tonumber(p.expires)
  if not expires or p.sig ~= link_sig(self, req.path, p.expires) then
    access_denied(req, res, "Request signature does not match")
    return false
  end
  if now >= expires then
    local iso = function(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) end
    access_denied(req, res, "Request has expired", "<Expires>" .. iso(expires) .. "</Expires><ServerTime>"
      .. iso(now) .. "</ServerTime>")
    return false
  end
  return true
end

--- Keep an uploaded file -> id.
function M:put_upload(id, bytes, content_type, name)
  self.uploads[id] = { bytes = bytes, content_type = content_type, name = name }
end

--- A slot for an upload that has not arrived yet (Vidu's and fal's PUT URLs).
function M:reserve_upload(id, meta)
  self.uploads[id] = meta or {}
end

--- Upload `id` ({ bytes, content_type, name }, or a reserved slot's metadata until its
-- bytes arrive), or nil.
function M:upload(id)
  return self.uploads[id]
end

--- The URL upload `id` is served at (with its file name when given).
function M:upload_url(id, name)
  return self.base_url .. "/media/u/" .. id .. (name and ("/" .. http.escape(name)) or "")
end

--- The upload id behind one of our own upload references, or nil: Vidu's `ssupload:?id=ID`,
-- or a URL under this server's /media/u/ (fal's file_url, WaveSpeed's download_url), with or
-- without a file name, query or fragment after the id.
function M:upload_id(ref)
  local id = ref:match("^ssupload:%?id=([%w%-_]+)$")
  if id then return id end
  local prefix = self.base_url .. "/media/u/"
  if self.base_url ~= "" and ref:sub(1, #prefix) == prefix then
    return ref:match("^([%w%-_]+)", #prefix + 1)
  end
  return nil
end

--- Resolve an image reference given to a provider.
-- Returns { bytes = s|nil, mime = s|nil, info = image info|nil, source = "data"|"upload"|"url" }
-- or nil, why, message. why: "invalid" (not a URL or data URI), "data" (bad data URI),
-- "missing" (an emulator upload that does not exist), "format" (bytes are not PNG/JPEG/WebP).
function M:resolve(ref)
  if type(ref) ~= "string" or ref == "" then return nil, "invalid", "image must be a non-empty string" end
  local bytes, mime, source
  if ref:sub(1, 5) == "data:" then
    local m, b = image.parse_data_uri(ref)
    if not m then return nil, "data", b end
    mime, bytes, source = m, b, "data"
  else
    local id = self:upload_id(ref)
    if id then
      local up = self.uploads[id]
      if not up or not up.bytes then return nil, "missing", "uploaded file " .. id .. " not found" end
      bytes, mime, source = up.bytes, up.content_type, "upload"
    elseif ref:match("^https?://[^/%s]+") then
      return { source = "url" }
    else
      return nil, "invalid", "image must be an http(s) URL or a data URI"
    end
  end
  local info, err = image.info(bytes)
  if not info then return nil, "format", err end
  return { bytes = bytes, mime = mime, info = info, source = source }
end

--- Routes: GET/HEAD /media/v/{key}.mp4, /media/c/{key}.jpg, /media/u/{id}[/{name}]
function M:serve(req, res, kind, key)
  if req.method ~= "GET" and req.method ~= "HEAD" then
    return res:send(405, { ["Content-Type"] = "text/plain", Allow = "GET, HEAD" }, "method not allowed\n")
  end
  if kind == "u" then
    local up = self.uploads[key]
    if not up or not up.bytes then
      return res:send(404, { ["Content-Type"] = "text/plain" }, "not found\n")
    end
    return http.send_bytes(req, res, { ["Content-Type"] = up.content_type or "application/octet-stream" },
      up.bytes)
  end
  local job = self.jobs[key]
  if not job then return res:send(404, { ["Content-Type"] = "text/plain" }, "not found\n") end
  self:when_ready(job, function()
    local field, path = kind == "v" and "vdata" or "cdata", kind == "v" and job.video or job.cover
    if not job[field] then
      local f = io.open(path, "rb")
      if not f then return res:send(404, { ["Content-Type"] = "text/plain" }, "not found\n") end
      job[field] = f:read("*a")
      f:close()
    end
    http.send_bytes(req, res, { ["Content-Type"] = kind == "v" and "video/mp4" or "image/jpeg" },
      job[field])
  end)
end

--- Kill the ffmpeg runs still going (their jobs never finish) and remove the scratch files.
function M:close()
  self.closed = true
  for child in pairs(self.children) do child:kill() end
  self.children = {}
  self:cleanup()
end

--- Remove the scratch files.
function M:cleanup()
  for _, job in pairs(self.jobs) do
    if not job.fallback then
      os.remove(job.video)
      os.remove(job.cover)
    end
    if job.image_path then os.remove(job.image_path) end
  end
end

return M
