--- Image inputs: a path, an http(s) URL, a data: URI or { data = bytes }.
--
-- resolve() reads what it can locally (the header bytes of a file, the decoded bytes of a
-- data: URI), checks format, aspect ratio and size, and decides how the image will travel:
-- as a URL untouched ("url"), inline as a data: URI ("inline") or through the provider's own
-- upload API ("upload"). It never touches the network, so a bad image is reported before any
-- request is sent. materialize() later turns the descriptor into the string the provider's
-- body takes, uploading if that was the route.
--
-- The limits are each driver's (`driver.rules.image`: max_bytes, inline_below, can_upload,
-- upload_default, ssupload); what holds for every provider is here:
-- * formats png, jpeg, webp;
-- * aspect ratio strictly between 1:4 and 4:1: every page says "less than 1:4 or 4:1"; whether
--   the bounds are inclusive is unconfirmed, so exactly 1:4 and 4:1 are refused;
-- * sizes are decimal megabytes (10 MB = 10,000,000 bytes), the conservative reading.
-- URLs are passed through as they are: no download, no check (the provider fetches them).
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local core = require("vidu.core")
local errors = require("vidu.errors")
local url = require("vidu.url")

local images = {}

local MB = 1000 * 1000

local FORMATS = { png = "image/png", jpeg = "image/jpeg", webp = "image/webp" }
local EXT = { png = "png", jpeg = "jpg", webp = "webp" }

local function image_error(provider, message, limit)
  return nil, errors.new{
    kind = "image", provider = provider, field = "image", limit = limit,
    message = "image: " .. message,
  }
end

-- "12.3 MB" for messages.
local function mb(bytes)
  return string.format("%.1f MB", bytes / MB)
end

--- Raises unless `v` has the shape of an image input (a string, or a table with a string
-- `data` and optionally a string `name`). Values are checked later by resolve().
function images.check_type(provider, v)
  if type(v) == "string" then return end
  if type(v) == "table" then
    for k, x in pairs(v) do
      if k ~= "data" and k ~= "name" then
        error(string.format("vidu %s: option 'image' table takes only 'data' and 'name', got '%s'",
          provider, tostring(k)), 0)
      end
      if type(x) ~= "string" then
        error(string.format("vidu %s: option 'image.%s' must be a string, got %s", provider,
          tostring(k), type(x)), 0)
      end
    end
    if v.data == nil then
      error(string.format("vidu %s: option 'image' table needs 'data' (the image bytes)",
        provider), 0)
    end
    return
  end
  error(string.format("vidu %s: option 'image' must be a path, an http(s) URL, a data: URI or "
    .. "a table { data = bytes }, got %s", provider, type(v)), 0)
end

local function basename(path)
  return path:match("([^/\\]+)$") or path
end

-- Checks what the header told us: a supported format, sane pixel size and the aspect ratio.
local function check_info(provider, info, what)
  if not FORMATS[info.format] then
    return image_error(provider, string.format("%s is %s, supported: png, jpeg, webp", what,
      tostring(info.format)), "png|jpeg|webp")
  end
  local w, h = info.width, info.height
  if not w or not h or w < 1 or h < 1 then
    return image_error(provider, string.format("%s has no pixel size (%sx%s)", what,
      tostring(w), tostring(h)), "size")
  end
  -- Strictly between 1:4 and 4:1, in integers: w/h > 1/4 and w/h < 4.
  if not (4 * w > h and w < 4 * h) then
    return image_error(provider, string.format(
      "%s is %dx%d, its aspect ratio must be strictly between 1:4 and 4:1", what, w, h),
      "1:4..4:1")
  end
  return true
end

local function check_size(provider, bytes, what, limits)
  if bytes > limits.max_bytes then
    return image_error(provider, string.format("%s is %s (%d bytes), the limit is %s", what,
      mb(bytes), bytes, mb(limits.max_bytes)), limits.max_bytes)
  end
  return true
end

-- Decides inline or upload for a local image of `size` bytes, honouring opts.upload
-- (nil = the provider's default, true = always upload, false = never upload).
local function route_for(provider, size, limits, upload, what)
  local fits = size < limits.inline_below
  -- The largest local image any route takes: under upload_below through the upload API (when
  -- there is one), else under the inline limit.
  local upload_cap = limits.can_upload and (limits.upload_below or limits.max_bytes + 1) or 0
  local upload_ok = size < upload_cap
  local local_max = math.max(limits.inline_below, upload_cap)
  if not fits and not upload_ok and limits.can_upload and upload ~= false then
    return nil, select(2, image_error(provider, string.format(
      "%s is %s: %s takes local images under %s (inline or through its upload API); pass an"
        .. " http(s) URL instead (the provider fetches it, up to %s), or a smaller file", what,
      mb(size), provider, mb(local_max), mb(limits.max_bytes)), local_max))
  end
  if upload == true then
    if not limits.can_upload then
      return nil, select(2, image_error(provider, string.format(
        "upload = true, but %s has no upload API (images go inline, under %s)", provider,
        mb(limits.inline_below)), "no upload API"))
    end
    if not upload_ok then
      return nil, select(2, image_error(provider, string.format(
        "%s is %s, too large for %s's upload API (under %s); pass an http(s) URL instead",
        what, mb(size), provider, mb(limits.upload_below)), limits.upload_below))
    end
    return "upload"
  end
  if upload == nil and limits.upload_default and limits.can_upload then return "upload" end
  if fits then return "inline" end
  if upload == false then
    return nil, select(2, image_error(provider, string.format(
      "%s is %s, too large to send inline (the limit is under %s) and upload = false", what,
      mb(size), mb(limits.inline_below)), limits.inline_below))
  end
  if not limits.can_upload then
    return nil, select(2, image_error(provider, string.format(
      "%s is %s, too large to send inline (the limit is under %s) and %s has no upload API; "
        .. "pass an http(s) URL instead", what, mb(size), mb(limits.inline_below), provider),
      limits.inline_below))
  end
  return "upload"
end

-- Whether a local image routed inline by default may go through the upload API instead once
-- a client sends it more than once (images.field): only when the caller left `upload` unset
-- and the provider has an upload API that takes this size.
local function shares_upload(route, limits, size, upload)
  return route == "inline" and upload == nil and limits.can_upload == true
    and size < (limits.upload_below or limits.max_bytes + 1) or nil
end

-- What the header of a local file said, by path, while its size and mtime stay the same: a
-- batch that submits one file a thousand times stats it a thousand times, and opens and
-- reads its header (64 KB, a page-faulting stdio buffer) once. Bounded: emptied when full.
local FILE_INFO_MAX = 256
local file_infos, file_info_count = {}, 0

local function file_info(path)
  local size, mtime = core.file_stat(path)
  local known = size and file_infos[path]
  if known and known.size == size and known.mtime == mtime then return known end
  local info, err = core.image_info_file(path)
  if not info then return nil, err end
  if size and info.size == size and info.mtime == mtime then
    if file_info_count >= FILE_INFO_MAX then file_infos, file_info_count = {}, 0 end
    if not file_infos[path] then file_info_count = file_info_count + 1 end
    file_infos[path] = info
  end
  return info
end

--- Resolves an image input under `rules` (a driver's rules, or a registered provider's
-- name). Returns a descriptor
-- { source = "url"|"file"|"bytes", route = "url"|"inline"|"upload", url =, path =, bytes =,
--   data_uri =, format =, mime =, width =, height =, size =, name = }
-- or nil, err (kind "image", field "image"). Reads local files' headers only.
function images.resolve(rules, input, opts)
  if type(rules) ~= "table" then rules = require("vidu.validate").rules_for(rules) end
  local provider, limits = rules.name, rules.image
  images.check_type(provider, input)
  local upload = opts and opts.upload

  if type(input) == "string" then
    local lower = input:sub(1, 8):lower()
    if lower:match("^https?://") then
      if not url.is_url(input) then
        return image_error(provider, string.format("%q is not a valid URL", input), "URL")
      end
      return { source = "url", route = "url", url = input }
    end
    if limits.ssupload and input:sub(1, 9) == "ssupload:" then
      -- A Vidu upload reference (from /tools/v2/files/uploads/.../finish): usable as is.
      return { source = "url", route = "url", url = input }
    end
    if lower:sub(1, 5) == "data:" then
      local mime, bytes = core.parse_data_uri(input)
      if not mime then
        return image_error(provider, "bad data: URI: " .. tostring(bytes), "data URI")
      end
      local desc, err = images.resolve(rules, { data = bytes, name = "the data: URI" }, opts)
      if not desc then return nil, err end
      if mime:lower() ~= desc.mime then
        return image_error(provider, string.format(
          "the data: URI says %s but the bytes are %s", mime, desc.format), desc.mime)
      end
      -- The caller's own URI is sent as is when it goes inline: no re-encoding.
      desc.data_uri = input
      return desc
    end
    if input:find("^%a[%w+.-]*://") then
      return image_error(provider, string.format(
        "%q: only http(s) URLs, data: URIs and local paths are accepted", input), "URL scheme")
    end
    -- A local path: only the header is read, and only when the file is new to this process
    -- or has changed (see file_info).
    local info, err = file_info(input)
    if not info then
      err = tostring(err)
      -- The core's messages usually name the path already.
      if not err:find(input, 1, true) then err = input .. ": " .. err end
      return image_error(provider, err, "readable image")
    end
    local what = input
    local ok, ierr = check_info(provider, info, what)
    if not ok then return nil, ierr end
    ok, ierr = check_size(provider, info.size, what, limits)
    if not ok then return nil, ierr end
    local route, rerr = route_for(provider, info.size, limits, upload, what)
    if not route then return nil, rerr end
    return {
      source = "file", route = route, path = input, format = info.format, mime = info.mime,
      width = info.width, height = info.height, size = info.size, name = basename(input),
      mtime = info.mtime, shared_upload = shares_upload(route, limits, info.size, upload),
    }
  end

  -- { data = bytes [, name = "file.png"] }
  local bytes = input.data
  local info, err = core.image_info(bytes)
  if not info then
    return image_error(provider, "the image bytes: " .. tostring(err), "readable image")
  end
  local what = "the image (" .. (input.name or (#bytes .. " bytes")) .. ")"
  local ok, ierr = check_info(provider, info, what)
  if not ok then return nil, ierr end
  ok, ierr = check_size(provider, #bytes, what, limits)
  if not ok then return nil, ierr end
  local route, rerr = route_for(provider, #bytes, limits, upload, what)
  if not route then return nil, rerr end
  return {
    source = "bytes", route = route, bytes = bytes, format = info.format, mime = info.mime,
    width = info.width, height = info.height, size = #bytes,
    name = input.name or ("image." .. EXT[info.format]),
    shared_upload = shares_upload(route, limits, #bytes, upload),
  }
end

-- Local files that go inline are streamed: the submit's body is the JSON around the image,
-- with the file's data: URI made by the engine as it sends (base64 encoded in C, a chunk at
-- a time, from a libcurl read callback). The encoded image is then never a Lua string: per
-- request in flight the engine holds one 48 KB chunk whatever the image's size, where a body
-- costs the data: URI in Lua plus libcurl's copy (2.7x the image) for every request in flight
-- and one such string of garbage per submit (1,000 submits of a 450 KB photo: 600 MB made
-- and collected). This holds for every size, so every local file that goes inline streams
-- (STREAM_FROM = 0): there is no size below which a string body is cheaper, since even the
-- cache's shared copy is copied into each body. What streaming costs is a read of the file
-- (from the page cache) and its encoding per send, a fraction of what making the string body
-- costs; and the file must keep the size it was checked with until it is sent (the engine
-- fails the transfer otherwise, naming the file). `{ data = bytes }` inputs stream the same
-- way from their string (the engine's data part: it keeps the string alive while it sends
-- and encodes it as it goes), so neither their data: URI nor a body holding it is ever
-- made. A data: URI given as the image is sent as it is, in a string body.
images.STREAM_FROM = 0

-- A streamed data: URI in a JSON body: json.encode writes it as the string "data:<mime>;
-- base64,<token>" and vidu.http splits the text at the token, where the engine puts `part`,
-- the file encoded on the fly. The token is made unique per value: a random process prefix
-- and a counter; nothing else in a body can hold it by chance.
local Stream = {}
Stream.__index = Stream
local stream_prefix, stream_count

local function stream_token()
  if not stream_prefix then
    local seed = tostring({}) .. tostring(os.time()) .. tostring(os.clock())
      .. tostring(core.now and core.now() or 0) .. tostring(math.random())
    stream_prefix = "vidu-stream-" .. core.hexencode(core.sha256(seed)):sub(1, 24) .. "-"
    stream_count = 0
  end
  stream_count = stream_count + 1
  return stream_prefix .. stream_count
end

function Stream.__json(v)
  return require("vidu.json").encode("data:" .. v.mime .. ";base64," .. v.token)
end

function Stream.__tostring(v)
  return string.format("data:%s;base64,... (streamed from %s, %d bytes)", v.mime,
    v.path or "memory", v.size)
end

--- The value standing for a local image's data: URI in a JSON body, sent by streaming the
-- file, or the bytes of a `{ data = ... }` input (see STREAM_FROM). desc is a resolved
-- descriptor (images.resolve) of source "file" or "bytes".
function images.stream(desc)
  local part
  if desc.source == "bytes" then
    part = { data = desc.bytes, base64 = true }
  else
    part = { file = desc.path, base64 = true, size = desc.size }
  end
  return setmetatable({
    path = desc.path, size = desc.size, mime = desc.mime, token = stream_token(), part = part,
  }, Stream)
end

--- True when v is a streamed data: URI (images.stream).
function images.is_stream(v)
  return getmetatable(v) == Stream
end

-- The per-client image cache. The same image (a path with the same size and mtime, or the
-- same bytes) is read and encoded once per client, and uploaded once while the provider's
-- URL is taken to be valid, whatever number of tasks use it:
-- * inline: the data: URI string, shared by every body that sends it; the cache keeps at
--   most INLINE_KEEP bytes of such strings (the oldest go first);
-- * upload: the URL the provider's upload gave back (fal's file_url, Vidu's ssupload uri,
--   WaveSpeed's download_url), reused for UPLOAD_TTL seconds of the client's clock. No
--   provider documents how long these stay usable; one hour is a conservative reading (fal
--   keeps CDN files far longer, Vidu's and WaveSpeed's pre-signed reads last hours).
-- Concurrent first uses of one image wait on one lock: the first reads (or uploads), the
-- others then find its result. A failure is not cached: the next waiter tries again.
-- { data = bytes } inputs are keyed by the bytes string itself (no hash to compute: the
-- same string is found by identity, equal strings by one comparison).
images.UPLOAD_TTL = 3600
images.INLINE_KEEP = 64 * MB

local function cache_of(client)
  local c = client._image_cache
  if not c then
    c = { files = {}, bytes = {}, order = {}, kept = 0, seen_bytes = 0,
      stats = { reads = 0, uploads = 0, hits = 0, streams = 0, fallbacks = 0 } }
    client._image_cache = c
  end
  return c
end

-- The table under which desc's entries live, and the key inside it.
local function cache_slot(c, desc, route)
  if desc.source == "file" then
    return c.files, string.format("%s|%s|%d|%s", route, desc.path, desc.size,
      desc.mtime and string.format("%.9f", desc.mtime) or "?")
  end
  local t = c.bytes[route]
  if not t then t = {} c.bytes[route] = t end
  return t, desc.bytes
end

-- Forgets the oldest inline URIs until the kept ones fit INLINE_KEEP.
local function trim(c)
  while c.kept > images.INLINE_KEEP and #c.order > 0 do
    local old = table.remove(c.order, 1)
    local e = old[1][old[2]]
    if e and e.uri then
      c.kept = c.kept - #e.uri
      old[1][old[2]] = nil
    end
  end
end

--- Counters of a client's image cache: { reads = files read and encoded (or bytes
-- encoded) into a data: URI string, uploads = uploads made, hits = uses served from the
-- cache, streams = bodies that stream a local file instead (nothing kept: see STREAM_FROM),
-- fallbacks = shared images whose upload failed, sent inline since (see shared_url),
-- kept = bytes of data: URI strings the cache holds }.
function images.cache_stats(client)
  local c = cache_of(client)
  local s = c.stats
  return { reads = s.reads, uploads = s.uploads, hits = s.hits, streams = s.streams,
    fallbacks = s.fallbacks, kept = c.kept }
end

local function encode(provider, desc)
  if desc.source == "bytes" then return core.data_uri(desc.bytes, desc.mime) end
  local uri, err = core.data_uri_file(desc.path, desc.mime)
  if not uri then return image_error(provider, tostring(err), "readable image") end
  return uri
end

-- What the cache holds for desc under route, made by make() on a miss. Returns the string
-- | nil, err.
local function cached(client, desc, route, make)
  -- No client (a direct call): nothing to share with.
  if type(client) ~= "table" or not client.scheduler then return make() end
  local c = cache_of(client)
  local t, key = cache_slot(c, desc, route)
  local sched = client.scheduler
  local function fresh(e)
    return e and e.value and (not e.expires or sched:time() < e.expires)
  end
  local e = t[key]
  if fresh(e) then
    c.stats.hits = c.stats.hits + 1
    return e.value
  end
  if not e then
    e = { lock = sched:semaphore(1) }
    t[key] = e
  end
  local lock = e.lock
  lock:acquire()
  -- Another task may have made it while this one waited.
  e = t[key]
  if fresh(e) then
    lock:release()
    c.stats.hits = c.stats.hits + 1
    return e.value
  end
  -- make() may raise (an uploader's bug, memory): the lock must not stay held, or every
  -- later use of this image would wait forever. Through the scheduler's pcall, which lets
  -- the upload's waits yield on Lua 5.1 too; the error goes on once the lock is free.
  local done, value, err = sched:pcall(make)
  if not done then
    lock:release()
    error(value, 0)
  end
  if value then
    e = t[key] or { lock = lock }
    e.value = value
    if route == "upload" then
      c.stats.uploads = c.stats.uploads + 1
      e.expires = sched:time() + images.UPLOAD_TTL
    else
      c.stats.reads = c.stats.reads + 1
      e.uri = value
      c.kept = c.kept + #value
      c.order[#c.order + 1] = { t, key }
    end
    t[key] = e
  end
  lock:release()
  if value and route ~= "upload" then trim(c) end
  return value, err
end

--- Turns a resolved descriptor into the string the provider's body takes: the URL itself,
-- a data: URI, or the URL the provider's upload API gave back. `uploader(client, desc)`
-- returns that URL | nil, err. Returns string | nil, err. Local images are read, encoded
-- and uploaded once per client (see the image cache above).
function images.materialize(client, provider, desc, uploader)
  if desc.route == "url" then return desc.url end
  if desc.route == "inline" then
    if desc.data_uri then return desc.data_uri end
    return cached(client, desc, "inline", function() return encode(provider, desc) end)
  end
  if not uploader then
    return image_error(provider, provider .. " has no upload API", "no upload API")
  end
  return cached(client, desc, "upload", function() return uploader(client, desc) end)
end

-- A local image that a client sends more than once, on the default route (shared_upload,
-- above), goes through the provider's upload API once and every later task names the URL:
-- the first use goes inline as usual (one image used once costs one request, as before), the
-- second uploads (the uses at the same time wait for its URL), and the rest are hits. Sending
-- 1,000 tasks of one 462 KB photo then moves 1.1 MB of image (one inline, one upload) instead
-- of 616 MB of base64. If that upload fails, the task goes inline after all, and so does
-- every later use of the image by this client (no upload is retried for it): the caller
-- never asked for one. Returns the URL, or nil to go on inline. Bytes inputs are remembered
-- by their string, so at most INLINE_KEEP bytes of them are; past that they stay inline.
local function shared_url(client, desc, uploader)
  if type(client) ~= "table" or not client.scheduler then return nil end
  local c = cache_of(client)
  local t, key = cache_slot(c, desc, "seen")
  local seen = t[key]
  if seen == nil then
    if desc.source == "bytes" then
      if c.seen_bytes + desc.size > images.INLINE_KEEP then return nil end
      c.seen_bytes = c.seen_bytes + desc.size
    end
    t[key] = "once"
    return nil
  end
  if seen == "failed" then return nil end
  return (cached(client, desc, "upload", function()
    -- A use that waited on the lock while the upload failed does not try again.
    if t[key] == "failed" then return nil end
    local u, err = uploader(client, desc)
    if not u then
      t[key] = "failed"
      c.stats.fallbacks = c.stats.fallbacks + 1
    end
    return u, err
  end))
end

--- The value of a JSON body's image field: what materialize() gives, except for a local
-- image (a file or `{ data = ... }` bytes) that goes inline (at least STREAM_FROM bytes),
-- which becomes images.stream(desc): vidu.http sends such a body as parts and the engine
-- encodes the image as it sends it. Returns string | stream value | nil, err.
function images.field(client, provider, desc, uploader)
  if desc.shared_upload and uploader then
    local u = shared_url(client, desc, uploader)
    if u then return u end
  end
  if desc.route == "inline" and (desc.source == "file" or desc.source == "bytes")
    and not desc.data_uri and desc.size >= images.STREAM_FROM then
    if type(client) == "table" and client.scheduler then
      local st = cache_of(client).stats
      st.streams = st.streams + 1
    end
    return images.stream(desc)
  end
  return images.materialize(client, provider, desc, uploader)
end

--- PUTs the image to a pre-signed URL: no Authorization header (the URL is the credential),
-- streamed from the file when the image is a path. Returns resp | nil, err.
function images.put(client, put_url, desc, headers)
  local h = { ["Content-Type"] = desc.mime }
  for k, v in pairs(headers or {}) do h[k] = v end
  return client:request{
    method = "PUT", url = put_url, auth = false, headers = h, idempotent = true,
    body_file = desc.source == "file" and desc.path or nil,
    body = desc.source == "bytes" and desc.bytes or nil,
  }
end

return images
