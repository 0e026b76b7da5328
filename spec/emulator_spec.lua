-- The offline emulator over HTTP: every provider's routes, validation in each provider's own
-- error shape, task progression, the control API, every fault kind, the request log and the
-- media it serves. No test sleeps for a fixed time or asserts a timing: progress is driven by
-- polls (deterministic) or awaited with deadlines.
local core = require("vidu.core")
local cjson = require("cjson")
local ejson = require("vidu.emulator.json")
local emulator = require("support.emulator")
local util = require("support.util")
local read, write = util.read_file, util.write_file

local function which(name)
  local p = io.popen("command -v " .. name .. " 2>/dev/null")
  local out = p:read("*l")
  p:close()
  return out and out ~= "" and out or nil
end

local PNG = read("spec/fixtures/png_640x360.png")
local JPEG = read("spec/fixtures/jpeg_640x360.jpg")
local TALL = read("spec/fixtures/png_100x400.png") -- exactly 1:4, accepted
local DATA_URI = "data:image/png;base64," .. core.b64encode(PNG)
local JPEG_URI = "data:image/jpeg;base64," .. core.b64encode(JPEG)

-- A PNG header claiming 1000x100 pixels (10:1): enough for every header check.
local function png_header(w, h)
  local function be32(n)
    return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
      math.floor(n / 256) % 256, n % 256)
  end
  return "\137PNG\r\n\26\n\0\0\0\13IHDR" .. be32(w) .. be32(h) .. "\8\2\0\0\0\0\0\0\0"
end
local WIDE_URI = "data:image/png;base64," .. core.b64encode(png_header(1000, 100))

local emu

-- One HTTP call to the emulator (support.emulator's Emu:call): the item gets .json when the
-- body is JSON.
local function call(method, path, opts)
  return emu:call(method, path, opts)
end

local function path_of(url)
  return (url:gsub("^https?://[^/]+", ""))
end

local function task_count()
  return emu:control("GET", "/_emulator/health").tasks
end

-- Submit helpers, one per provider, returning the HTTP item.
local VIDU = "Token vidu-key"
local BEARER = "Bearer test-key"
local FAL = "Key fal-id:fal-secret"

local function vidu_submit(fields, auth)
  local b = { model = "viduq1", images = { DATA_URI }, prompt = "The astronaut waved." }
  for k, v in pairs(fields or {}) do b[k] = v end
  for k, v in pairs(fields or {}) do if v == ejson.null then b[k] = nil end end
  return call("POST", "/ent/v2/img2video", { auth = auth or VIDU, json = b })
end

local function fal_submit(fields, query)
  local b = { prompt = "The astronaut waved.", image_url = DATA_URI }
  for k, v in pairs(fields or {}) do b[k] = v end
  for k, v in pairs(fields or {}) do if v == ejson.null then b[k] = nil end end
  return call("POST", "/fal-ai/vidu/q1/image-to-video" .. (query or ""), { auth = FAL, json = b })
end

local function ws_submit(fields, query)
  local b = { prompt = "The astronaut waved.", image = DATA_URI }
  for k, v in pairs(fields or {}) do b[k] = v end
  for k, v in pairs(fields or {}) do if v == ejson.null then b[k] = nil end end
  return call("POST", "/api/v3/vidu/image-to-video-2.0" .. (query or ""), { auth = BEARER, json = b })
end

local function vtrix_submit(params, flat)
  local p = { images = { DATA_URI }, prompt = "The astronaut waved." }
  for k, v in pairs(params or {}) do p[k] = v end
  for k, v in pairs(params or {}) do if v == ejson.null then p[k] = nil end end
  local b
  if flat then
    b = p
    b.model = "viduq1_img2video"
  else
    b = { model = "viduq1_img2video", input = { { params = p } } }
  end
  return call("POST", "/model/v1/generation", { auth = BEARER, json = b })
end

-- ffprobe's duration of an MP4, or nil when ffprobe is absent.
local FFPROBE = which("ffprobe")
local function mp4_duration(bytes)
  if not FFPROBE then return nil end
  local path = os.tmpname()
  write(path, bytes)
  local p = io.popen(FFPROBE .. " -v error -show_entries format=duration -of csv=p=0 " .. path .. " 2>&1")
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return tonumber(out:match("[%d%.]+")), out
end

-- A real MP4: ISO BMFF 'ftyp' box first; ffprobe reads it when present.
local function assert_mp4(bytes, seconds)
  assert.is_true(#bytes > 100)
  assert.are.equal("ftyp", bytes:sub(5, 8))
  local d, out = mp4_duration(bytes)
  if FFPROBE then
    assert.is_number(d, out)
    if seconds then assert.is_true(math.abs(d - seconds) < 0.6, "duration " .. tostring(d)) end
  end
end

setup(function()
  emu = emulator.start{ seed = 7 }
end)

teardown(function()
  if emu then emu:stop() end
end)

before_each(function()
  emu:reset()
end)

describe("emulator control API", function()
  it("reports health and its own base URL", function()
    local h = emu:control("GET", "/_emulator/health")
    assert.is_true(h.ok)
    assert.are.equal(emu.url, h.url)
  end)

  it("reset clears tasks, faults and the log, and takes a config", function()
    assert.are.equal(200, vidu_submit().status)
    emu:fault{ path = "/nowhere", kind = "status", status = 500, times = 5 }
    assert.are.equal(1, task_count())
    local v = emu:reset{ polls = 1 }
    assert.is_true(v.ok)
    assert.are.equal(1, v.config.polls)
    assert.are.equal(0, task_count())
    assert.are.equal(0, #emu:control("GET", "/_emulator/faults").faults)
    assert.are.equal(0, #emu:requests{})
  end)

  it("merges run-level config and rejects unknown values", function()
    local v = emu:config{ polls = 5, outcome = "failed" }
    assert.are.equal(5, v.config.polls)
    assert.are.equal("failed", v.config.outcome)
    local _, status = emu:config{ outcome = "exploded" }
    assert.are.equal(400, status)
    _, status = emu:config{ progress = "sometimes" }
    assert.are.equal(400, status)
  end)

  it("does not log its own routes", function()
    emu:control("GET", "/_emulator/health")
    assert.are.equal(0, #emu:requests{})
  end)

  it("applies /next to the next submitted task only, in order", function()
    emu:next{ polls = 1, outcome = "failed" }
    emu:next{ polls = 1, outcome = "moderated" }
    local a = vidu_submit().json.task_id
    local b = vidu_submit().json.task_id
    local c = vidu_submit().json.task_id
    assert.are.equal("failed", emu:task(a).task.outcome)
    assert.are.equal("moderated", emu:task(b).task.outcome)
    assert.are.equal("succeeded", emu:task(c).task.outcome)
    assert.are.equal(1, emu:task(a).task.npolls)
    assert.are.equal(3, emu:task(c).task.npolls)
  end)

  it("changes one task: state, outcome and polls", function()
    local id = vidu_submit().json.task_id
    local v = emu:task(id, { state = "running" })
    assert.are.equal("running", v.task.stage)
    local r = call("GET", "/ent/v2/tasks/" .. id .. "/creations", { auth = VIDU })
    assert.are.equal("processing", r.json.state)
    emu:task(id, { state = "auto", outcome = "moderated", polls = 0 })
    r = call("GET", "/ent/v2/tasks/" .. id .. "/creations", { auth = VIDU })
    assert.are.equal("failed", r.json.state)
    assert.are.equal("CreationPolicyViolation", r.json.err_code)
    local _, status = emu:task("nope", { state = "running" })
    assert.are.equal(404, status)
    _, status = emu:task(id, { state = "dancing" })
    assert.are.equal(400, status)
  end)

  it("lists tasks", function()
    vidu_submit()
    fal_submit()
    local v = emu:control("GET", "/_emulator/tasks")
    assert.are.equal(2, #v.tasks)
  end)

  it("answers unknown control routes with 404", function()
    local _, status = emu:control("GET", "/_emulator/nothing")
    assert.are.equal(404, status)
  end)
end)

describe("emulator request log", function()
  it("records method, path, query, headers and body exactly", function()
    local body = '{"model":"viduq1","images":["' .. DATA_URI .. '"],"prompt":"x"}'
    call("POST", "/ent/v2/img2video?trace=1", { auth = VIDU, json = body, headers = { ["X-Extra"] = "yes" } })
    call("GET", "/ent/v2/tasks/123/creations", { auth = VIDU })
    local posts = emu:requests{ method = "POST", path = "/ent/v2/img2video" }
    assert.are.equal(1, #posts)
    local e = posts[1]
    assert.are.equal("POST", e.method)
    assert.are.equal("trace=1", e.query)
    assert.are.equal(body, e.body)
    assert.are.equal(VIDU, e.headers.authorization)
    assert.are.equal("yes", e.headers["x-extra"])
    assert.are.equal(200, e.status)
    assert.is_number(e.time)
    assert.are.equal(1, #emu:requests{ match = "^/ent/v2/tasks/%d+/creations$" })
    assert.are.equal(2, #emu:requests{})
    assert.are.equal(1, #emu:requests{ method = "get" })
  end)

  it("keeps at most log_body_limit bytes of each body, and at most log_limit entries", function()
    emu:reset{ log_body_limit = 10, log_limit = 3 }
    vidu_submit()
    local e = emu:requests{ method = "POST" }[1]
    assert.are.equal(10, #e.body)
    assert.is_true(e.body_truncated)
    assert.is_true(e.body_size > 10)
    for _ = 1, 4 do call("GET", "/ent/v2/tasks/1/creations", { auth = VIDU }) end
    assert.are.equal(3, #emu:requests{})
  end)
end)

describe("emulator Vidu API", function()
  it("rejects a missing or wrong Authorization scheme with Vidu's error shape", function()
    local r = call("POST", "/ent/v2/img2video", { json = { model = "viduq1" } })
    assert.are.equal(401, r.status)
    assert.are.equal(401, r.json.code)
    assert.are.equal("Unauthorized", r.json.reason)
    assert.is_string(r.json.message)
    assert.is_string(r.json.metadata.trace_id)
    r = vidu_submit({}, "Bearer vidu-key")
    assert.are.equal(401, r.status)
  end)

  it("accepts only configured keys when keys are configured", function()
    emu:reset{ keys = { vidu = { "good" } } }
    assert.are.equal(401, vidu_submit({}, "Token bad").status)
    assert.are.equal(200, vidu_submit({}, "Token good").status)
  end)

  -- Model rules: one row per case, the expected error named exactly.
  local rows = {
    { "viduq1", 5, "1080p", 200 },
    { "viduq1", nil, nil, 200, 5, "1080p" },
    { "viduq1", 4, nil, 400, "FieldInvalid" },
    { "viduq1", 8, nil, 400, "FieldInvalid" },
    { "viduq1", 5, "720p", 400, "FieldInvalid" },
    { "vidu2.0", 4, "360p", 200 },
    { "vidu2.0", 4, "720p", 200 },
    { "vidu2.0", 4, "1080p", 200 },
    { "vidu2.0", 8, "720p", 200 },
    { "vidu2.0", nil, nil, 200, 4, "360p" },
    { "vidu2.0", 8, nil, 200, 8, "720p" },
    { "vidu2.0", 8, "1080p", 400, "FieldInvalid" },
    { "vidu2.0", 8, "360p", 400, "FieldInvalid" },
    { "vidu2.0", 5, nil, 400, "FieldInvalid" },
    { "vidu1.5", 4, "1080p", 200 },
    { "vidu1.5", 8, "720p", 200 },
    { "vidu1.5", 8, "1080p", 400, "FieldInvalid" },
    { "viduq9", 5, nil, 400, "FieldInvalid" },
    { "viduq1", "5", nil, 200, 5 }, -- the docs' own example sends strings
  }
  for _, row in ipairs(rows) do
    local model, duration, resolution, status = row[1], row[2], row[3], row[4]
    it(string.format("model rules: %s %ss %s -> %d", model, tostring(duration), tostring(resolution),
      status), function()
      local r = vidu_submit{ model = model, duration = duration, resolution = resolution }
      assert.are.equal(status, r.status, r.body)
      if status == 200 then
        assert.are.equal("created", r.json.state)
        assert.are.equal(model, r.json.model)
        if row[5] then assert.are.equal(row[5], r.json.duration) end
        if row[6] then assert.are.equal(row[6], r.json.resolution) end
      else
        assert.are.equal(row[5], r.json.reason)
        assert.are.equal(400, r.json.code)
      end
    end)
  end

  local input_rows = {
    { "missing model", { model = ejson.null }, "FieldLacking" },
    { "missing images", { images = ejson.null }, "FieldLacking" },
    { "two images", { images = { DATA_URI, DATA_URI } }, "FieldItemCountOutOfRange" },
    { "no images", { images = ejson.array() }, "FieldItemCountOutOfRange" },
    { "data URI without content type", { images = { "data:;base64," .. core.b64encode(PNG) } },
      "ImageFormatInvalid" },
    { "bad base64", { images = { "data:image/png;base64,@@@@" } }, "ImageFormatInvalid" },
    { "not an image", { images = { "data:image/png;base64,"
      .. core.b64encode("hello world, not a picture") } },
      "ImageFormatInvalid" },
    { "aspect ratio 10:1", { images = { WIDE_URI } }, "PageSizeOutOfRange" },
    { "prompt over 1500 characters", { prompt = string.rep("a", 1501) }, "FieldInvalid" },
    { "bad movement_amplitude", { movement_amplitude = "huge" }, "FieldInvalid" },
    { "seed not an integer", { seed = 1.5 }, "FieldInvalid" },
    { "bgm not a boolean", { bgm = "yes" }, "FieldInvalid" },
    { "callback_url not http", { callback_url = "ftp://x" }, "FieldInvalid" },
    { "unknown upload", { images = { "ssupload:?id=nope" } }, "ImageDownloadFailure" },
  }
  for _, row in ipairs(input_rows) do
    it("input: " .. row[1] .. " -> " .. row[3], function()
      local r = vidu_submit(row[2])
      assert.are.equal(400, r.status, r.body)
      assert.are.equal(row[3], r.json.reason)
    end)
  end

  it("accepts an image of exactly 1:4, a JPEG and a 1500-character prompt", function()
    assert.are.equal(200, vidu_submit{ images = { "data:image/png;base64," .. core.b64encode(TALL) } }.status)
    assert.are.equal(200, vidu_submit{ images = { JPEG_URI } }.status)
    assert.are.equal(200, vidu_submit{ prompt = string.rep("é", 1500) }.status)
  end)

  it("rejects a base64 image of 10 MB or more", function()
    local big = "data:image/png;base64," .. core.b64encode(PNG .. string.rep("\0", 10 * 1024 * 1024))
    local r = vidu_submit{ images = { big } }
    assert.are.equal(400, r.status)
    assert.are.equal("PageSizeOutOfRange", r.json.reason)
  end)

  it("echoes the submit as Vidu does", function()
    local r = vidu_submit{ model = "vidu2.0", duration = 8, seed = 42, movement_amplitude = "large",
      payload = "p" }
    local j = r.json
    assert.is_string(j.task_id)
    assert.are.equal("created", j.state)
    assert.are.equal(42, j.seed)
    assert.are.equal("large", j.movement_amplitude)
    assert.are.equal("p", j.payload)
    assert.are.equal("720p", j.resolution)
    assert.is_number(j.credits)
    assert.is_string(j.created_at)
  end)

  it("progresses created -> queueing -> processing -> success over polls", function()
    emu:next{ polls = 3 }
    local id = vidu_submit().json.task_id
    local states = {}
    for i = 1, 4 do
      local r = call("GET", "/ent/v2/tasks/" .. id .. "/creations", { auth = VIDU })
      assert.are.equal(200, r.status)
      states[i] = r.json.state
    end
    assert.are.same({ "queueing", "processing", "success", "success" }, states)
    local r = call("GET", "/ent/v2/tasks/" .. id .. "/creations", { auth = VIDU })
    assert.are.equal("", r.json.err_code)
    assert.are.equal(1, #r.json.creations)
    assert.matches("^" .. emu.url:gsub("%p", "%%%0") .. "/", r.json.creations[1].url)
    assert.is_string(r.json.creations[1].cover_url)
  end)

  it("progresses with time when configured so", function()
    emu:next{ progress = "time", seconds = 0.3 }
    local id = vidu_submit().json.task_id
    local state = emu:wait_for(function()
      local r = call("GET", "/ent/v2/tasks/" .. id .. "/creations", { auth = VIDU })
      return r.json.state == "success" and r.json.state
    end, 30)
    assert.are.equal("success", state)
  end)

  it("fails and moderates on demand", function()
    emu:next{ polls = 1, outcome = "failed" }
    emu:next{ polls = 1, outcome = "moderated" }
    local a = vidu_submit().json.task_id
    local b = vidu_submit().json.task_id
    local ra = call("GET", "/ent/v2/tasks/" .. a .. "/creations", { auth = VIDU }).json
    local rb = call("GET", "/ent/v2/tasks/" .. b .. "/creations", { auth = VIDU }).json
    assert.are.equal("failed", ra.state)
    assert.are.equal("InternalServiceFailure", ra.err_code)
    assert.are.equal(0, #ra.creations)
    assert.are.equal("failed", rb.state)
    assert.are.equal("CreationPolicyViolation", rb.err_code)
  end)

  it("cancels a queued task, refuses to cancel a finished one", function()
    emu:next{ polls = 10 }
    local id = vidu_submit().json.task_id
    local r = call("POST", "/ent/v2/tasks/" .. id .. "/cancel", { auth = VIDU, json = { id = id } })
    assert.are.equal(200, r.status)
    assert.are.same({}, r.json)
    local q = call("GET", "/ent/v2/tasks/" .. id .. "/creations", { auth = VIDU }).json
    assert.are.equal("failed", q.state)
    assert.are.equal("UserCancelled", q.err_code)

    emu:next{ polls = 1 }
    local done = vidu_submit().json.task_id
    call("GET", "/ent/v2/tasks/" .. done .. "/creations", { auth = VIDU })
    r = call("POST", "/ent/v2/tasks/" .. done .. "/cancel", { auth = VIDU, json = { id = done } })
    assert.are.equal(400, r.status)
    assert.are.equal("BadRequest", r.json.reason)
    assert.matches("can not cancel", r.json.message)
  end)

  it("answers TaskNotFound for unknown tasks and for other keys' tasks", function()
    local r = call("GET", "/ent/v2/tasks/123/creations", { auth = VIDU })
    assert.are.equal(404, r.status)
    assert.are.equal("TaskNotFound", r.json.reason)
    local id = vidu_submit().json.task_id
    r = call("GET", "/ent/v2/tasks/" .. id .. "/creations", { auth = "Token someone-else" })
    assert.are.equal(404, r.status)
    r = call("POST", "/ent/v2/tasks/123/cancel", { auth = VIDU, json = { id = "123" } })
    assert.are.equal(404, r.status)
  end)

  it("uploads in three steps and takes the ssupload URI as an image", function()
    local r = call("POST", "/tools/v2/files/uploads", { auth = VIDU, json = { scene = "vidu" } })
    assert.are.equal(200, r.status)
    local id, put_url = r.json.id, r.json.put_url
    assert.is_string(r.json.expires_at)
    local put = call("PUT", path_of(put_url) , { body = PNG, headers = { ["Content-Type"] = "image/png" } })
    assert.are.equal(200, put.status)
    local etag = put.headers.etag
    assert.is_string(etag)
    local bad = call("PUT", "/tools/v2/files/uploads/" .. id .. "/finish", { auth = VIDU,
      json = { etag = "nope" } })
    assert.are.equal(400, bad.status)
    local fin = call("PUT", "/tools/v2/files/uploads/" .. id .. "/finish", { auth = VIDU,
      json = { etag = etag } })
    assert.are.equal(200, fin.status)
    assert.are.equal("ssupload:?id=" .. id, fin.json.uri)
    assert.are.equal(200, vidu_submit{ images = { fin.json.uri } }.status)
    local missing = call("POST", "/tools/v2/files/uploads", { auth = VIDU, json = {} })
    assert.are.equal("FieldLacking", missing.json.reason)
  end)

  it("serves a real MP4 of the requested length, a JPEG cover, and byte ranges", function()
    emu:next{ polls = 1 }
    local id = vidu_submit{ model = "vidu2.0", duration = 8, resolution = "720p",
      images = { JPEG_URI } }.json.task_id
    local c = call("GET", "/ent/v2/tasks/" .. id .. "/creations", { auth = VIDU }).json.creations[1]
    local video = call("GET", path_of(c.url), { timeout = 60 })
    assert.are.equal(200, video.status)
    assert.are.equal("video/mp4", video.headers["content-type"])
    assert.are.equal("bytes", video.headers["accept-ranges"])
    assert_mp4(video.body, 8)
    local cover = call("GET", path_of(c.cover_url))
    assert.are.equal(200, cover.status)
    assert.are.equal("\255\216", cover.body:sub(1, 2))

    local part = call("GET", path_of(c.url), { headers = { Range = "bytes=0-99" } })
    assert.are.equal(206, part.status)
    assert.are.equal(video.body:sub(1, 100), part.body)
    assert.are.equal("bytes 0-99/" .. #video.body, part.headers["content-range"])
    local tail = call("GET", path_of(c.url), { headers = { Range = "bytes=-10" } })
    assert.are.equal(video.body:sub(-10), tail.body)
    local open = call("GET", path_of(c.url), { headers = { Range = "bytes=" .. (#video.body - 5) .. "-" } })
    assert.are.equal(video.body:sub(-5), open.body)
    local beyond = call("GET", path_of(c.url), { headers = { Range = "bytes=" .. (#video.body + 5) .. "-" } })
    assert.are.equal(416, beyond.status)
    assert.are.equal("bytes */" .. #video.body, beyond.headers["content-range"])
    local head = call("HEAD", path_of(c.url))
    assert.are.equal(200, head.status)
    assert.are.equal(tostring(#video.body), head.headers["content-length"])
  end)

  it("makes one video per image, duration and amplitude", function()
    emu:next{ polls = 1 }
    emu:next{ polls = 1 }
    emu:next{ polls = 1 }
    local a = vidu_submit{ movement_amplitude = "small" }.json.task_id
    local b = vidu_submit{ movement_amplitude = "small" }.json.task_id
    local c = vidu_submit{ movement_amplitude = "large" }.json.task_id
    local function url(id)
      return call("GET", "/ent/v2/tasks/" .. id .. "/creations", { auth = VIDU }).json.creations[1].url
    end
    assert.are.equal(url(a), url(b))
    assert.are_not.equal(url(a), url(c))
  end)
end)

describe("emulator relay API", function()
  it("takes Bearer auth and answers auth errors in the relay's shape", function()
    local r = call("POST", "/vidu/v2/img2video", { auth = VIDU, json = { model = "viduq2-pro" } })
    assert.are.equal(401, r.status)
    assert.is_string(r.json.error.message)
    assert.is_string(r.json.error.type)
  end)

  it("passes the Vidu body through, with the relay's extra models", function()
    local r = call("POST", "/vidu/v2/img2video", { auth = BEARER, json = { model = "viduq2-pro",
      images = { DATA_URI }, prompt = "x", duration = 5, resolution = "720p", off_peak = false } })
    assert.are.equal(200, r.status, r.body)
    local j = r.json
    assert.are.equal("img2video", j.type)
    assert.are.equal(0, j.cus_priority)
    assert.are.equal("", j.meta_data)
    emu:task(j.task_id, { polls = 1 })
    local q = call("GET", "/vidu/v2/tasks/" .. j.task_id .. "/creations", { auth = BEARER })
    assert.are.equal(200, q.status)
    assert.are.equal("success", q.json.state)
    assert.is_string(q.json.creations[1].url)
    local bad = call("POST", "/vidu/v2/img2video", { auth = BEARER, json = { model = "vidu2.0",
      images = { DATA_URI }, duration = 8, resolution = "1080p" } })
    assert.are.equal(400, bad.status)
    assert.are.equal("FieldInvalid", bad.json.reason)
  end)

  it("has no cancel route", function()
    local r = call("POST", "/vidu/v2/tasks/1/cancel", { auth = BEARER, json = {} })
    assert.are.equal(404, r.status)
  end)
end)

describe("emulator fal queue API", function()
  it("returns owner/app URLs from submit and a request id header", function()
    local r = fal_submit()
    assert.are.equal(200, r.status, r.body)
    local j = r.json
    assert.is_string(j.request_id)
    assert.are.equal("IN_QUEUE", j.status)
    local base = emu.url .. "/fal-ai/vidu/requests/" .. j.request_id
    assert.are.equal(base, j.response_url)
    assert.are.equal(base .. "/status", j.status_url)
    assert.are.equal(base .. "/cancel", j.cancel_url)
    assert.are.equal(j.request_id, r.headers["x-fal-request-id"])
  end)

  it("answers 202 while pending (queue_position, logs) and 200 when completed", function()
    emu:next{ polls = 4 }
    local j = fal_submit().json
    local st = path_of(j.status_url) .. "?logs=1"
    local s1 = call("GET", st, { auth = FAL })
    assert.are.equal(202, s1.status)
    assert.are.equal("IN_QUEUE", s1.json.status)
    assert.is_number(s1.json.queue_position)
    local s2 = call("GET", st, { auth = FAL })
    assert.are.equal(202, s2.status)
    assert.are.equal("IN_PROGRESS", s2.json.status)
    assert.is_table(s2.json.logs)
    assert.are.equal("INFO", s2.json.logs[1].level)
    local early = call("GET", path_of(j.response_url), { auth = FAL })
    assert.are.equal(400, early.status)
    call("GET", st, { auth = FAL })
    local s4 = call("GET", st, { auth = FAL })
    assert.are.equal(200, s4.status)
    assert.are.equal("COMPLETED", s4.json.status)
    assert.is_number(s4.json.metrics.inference_time)
    -- Without logs=1 the key is still there, an empty array (fal's Python client reads it).
    local nolog = call("GET", path_of(j.status_url), { auth = FAL })
    assert.are.same({}, nolog.json.logs)
    assert.truthy(nolog.body:find('"logs":[]', 1, true))
    local res = call("GET", path_of(j.response_url), { auth = FAL })
    assert.are.equal(200, res.status)
    assert.are.equal("video/mp4", res.json.video.content_type)
    local video = call("GET", path_of(res.json.video.url), { timeout = 60 })
    assert_mp4(video.body, 5)
  end)

  it("answers 422 with a detail list on bad input", function()
    local r = call("POST", "/fal-ai/vidu/q1/image-to-video", { auth = FAL, json = { seed = "x",
      movement_amplitude = "huge" } })
    assert.are.equal(422, r.status)
    local by_field = {}
    for _, d in ipairs(r.json.detail) do
      assert.are.equal("body", d.loc[1])
      assert.is_string(d.msg)
      by_field[d.loc[2]] = d.type
    end
    assert.are.same({ prompt = "missing", image_url = "missing", seed = "int_type",
      movement_amplitude = "enum" },
      by_field)
    r = fal_submit{ prompt = string.rep("a", 1501) }
    assert.are.equal("string_too_long", r.json.detail[1].type)
    r = fal_submit{ image_url = "data:image/png;base64," .. core.b64encode("nope nope nope") }
    assert.are.equal("image_load_error", r.json.detail[1].type)
    r = fal_submit{ image_url = "not a url" }
    assert.are.equal("file_download_error", r.json.detail[1].type)
    r = call("POST", "/fal-ai/vidu/q1/image-to-video", { auth = FAL, json = "[1]" })
    assert.are.equal(422, r.status)
  end)

  it("takes Key auth only", function()
    local r = call("POST", "/fal-ai/vidu/q1/image-to-video", { json = {} })
    assert.are.equal(401, r.status)
    assert.is_string(r.json.detail)
    r = call("POST", "/fal-ai/vidu/q1/image-to-video", { auth = "Bearer x", json = {} })
    assert.are.equal(401, r.status)
  end)

  it("accepts any http(s) image URL it cannot fetch (a fallback video is made)", function()
    emu:next{ polls = 1 }
    local j = fal_submit{ image_url = "https://example.invalid/cat.png" }.json
    call("GET", path_of(j.status_url), { auth = FAL })
    local res = call("GET", path_of(j.response_url), { auth = FAL })
    local video = call("GET", path_of(res.json.video.url), { timeout = 60 })
    assert_mp4(video.body)
  end)

  it("cancels: CANCELLATION_REQUESTED, ALREADY_COMPLETED, NOT_FOUND", function()
    emu:next{ polls = 5 }
    local j = fal_submit().json
    local c = call("PUT", path_of(j.cancel_url), { auth = FAL })
    assert.are.equal(202, c.status)
    assert.are.equal("CANCELLATION_REQUESTED", c.json.status)
    local s = call("GET", path_of(j.status_url), { auth = FAL })
    assert.are.equal("COMPLETED", s.json.status)
    assert.are.equal("request_cancelled", s.json.error_type)
    c = call("PUT", path_of(j.cancel_url), { auth = FAL })
    assert.are.equal(400, c.status)
    assert.are.equal("ALREADY_COMPLETED", c.json.status)
    c = call("PUT", "/fal-ai/vidu/requests/nope/cancel", { auth = FAL })
    assert.are.equal(404, c.status)
    assert.are.equal("NOT_FOUND", c.json.status)
  end)

  it("reports failure and moderation in COMPLETED and in the result", function()
    emu:next{ polls = 1, outcome = "failed" }
    emu:next{ polls = 1, outcome = "moderated" }
    local a, b = fal_submit().json, fal_submit().json
    local sa = call("GET", path_of(a.status_url), { auth = FAL }).json
    assert.are.equal("COMPLETED", sa.status)
    assert.is_string(sa.error)
    -- fal's errors page: downstream_service_error is a 400; X-Fal-Retryable is optional and
    -- left out by default (config fal_retryable_header).
    local ra = call("GET", path_of(a.response_url), { auth = FAL })
    assert.are.equal(400, ra.status)
    assert.are.equal("downstream_service_error", ra.json.detail[1].type)
    assert.are.equal("https://docs.fal.ai/errors/#downstream_service_error", ra.json.detail[1].url)
    assert.is_nil(ra.headers["x-fal-retryable"])
    call("GET", path_of(b.status_url), { auth = FAL })
    local rb = call("GET", path_of(b.response_url), { auth = FAL })
    assert.are.equal(422, rb.status)
    assert.are.equal("content_policy_violation", rb.json.detail[1].type)
  end)

  it("streams status as server-sent events until COMPLETED", function()
    emu:reset{ stream_interval = 0.01 }
    emu:next{ polls = 3 }
    local j = fal_submit().json
    local r = call("GET", path_of(j.status_url) .. "/stream?logs=1", { auth = FAL })
    assert.are.equal(200, r.status)
    assert.matches("^text/event%-stream", r.headers["content-type"])
    local statuses = {}
    for data in r.body:gmatch("data: ([^\n]+)\n\n") do statuses[#statuses + 1] = cjson.decode(data).status end
    assert.is_true(#statuses >= 2)
    assert.are.equal("COMPLETED", statuses[#statuses])
  end)

  it("uploads through initiate + PUT and through the v3 CDN token", function()
    local r = call("POST", "/storage/upload/initiate?storage_type=fal-cdn-v3", { auth = FAL,
      json = { file_name = "cat.png", content_type = "image/png" } })
    assert.are.equal(200, r.status)
    local put = call("PUT", path_of(r.json.upload_url), { body = PNG,
      headers = { ["Content-Type"] = "image/png" } })
    assert.are.equal(200, put.status)
    local got = call("GET", path_of(r.json.file_url))
    assert.are.equal(PNG, got.body)
    assert.are.equal("image/png", got.headers["content-type"])
    assert.are.equal(200, fal_submit{ image_url = r.json.file_url }.status)

    local t = call("POST", "/storage/auth/token?storage_type=fal-cdn-v3", { auth = FAL, json = {} })
    assert.are.equal(200, t.status)
    local up = call("POST", "/files/upload", { body = JPEG, headers = {
      Authorization = t.json.token_type .. " " .. t.json.token, ["Content-Type"] = "image/jpeg",
      ["X-Fal-File-Name"] = "a.jpg" } })
    assert.are.equal(200, up.status)
    assert.are.equal(JPEG, call("GET", path_of(up.json.access_url)).body)
    local denied = call("POST", "/files/upload", { body = "x", headers = { Authorization = "Bearer nope" } })
    assert.are.equal(401, denied.status)
  end)

  it("serves its webhook key set", function()
    local r = call("GET", "/.well-known/jwks.json")
    assert.are.equal(200, r.status)
    assert.are.equal(1, #r.json.keys)
    assert.are.equal("OKP", r.json.keys[1].kty)
    assert.are.equal("Ed25519", r.json.keys[1].crv)
    assert.is_string(r.json.keys[1].x)
  end)
end)

describe("emulator WaveSpeed API", function()
  it("submits in the {code, message, data} envelope and progresses to completed", function()
    emu:next{ polls = 3 }
    local r = ws_submit()
    assert.are.equal(200, r.status, r.body)
    assert.are.equal(200, r.json.code)
    assert.are.equal("success", r.json.message)
    local d = r.json.data
    assert.are.equal("created", d.status)
    assert.are.equal(0, #d.outputs)
    assert.are.equal(emu.url .. "/api/v3/predictions/" .. d.id .. "/result", d.urls.get)
    local seen = {}
    for i = 1, 3 do seen[i] = call("GET", path_of(d.urls.get), { auth = BEARER }).json.data.status end
    assert.are.same({ "created", "processing", "completed" }, seen)
    local again = call("GET", "/api/v3/predictions/" .. d.id, { auth = BEARER }).json.data
    assert.are.equal("completed", again.status)
    assert.are.equal(1, #again.outputs)
    assert_mp4(call("GET", path_of(again.outputs[1]), { timeout = 60 }).body, 4)
  end)

  local rows = {
    { "missing image", { image = ejson.null } },
    { "missing prompt", { prompt = ejson.null } },
    { "duration 5", { duration = 5 } },
    { "seed below -1", { seed = -2 } },
    { "bad amplitude", { movement_amplitude = "wild" } },
    { "aspect 10:1", { image = WIDE_URI } },
    { "not an image", { image = "data:image/png;base64," .. core.b64encode("plain text here") } },
    { "sync mode not a boolean", { enable_sync_mode = "yes" } },
  }
  for _, row in ipairs(rows) do
    it("rejects " .. row[1] .. " with 400 in its envelope", function()
      local r = ws_submit(row[2])
      assert.are.equal(400, r.status, r.body)
      assert.are.equal(400, r.json.code)
      assert.is_string(r.json.message)
    end)
  end

  it("takes Bearer auth only", function()
    local r = call("POST", "/api/v3/vidu/image-to-video-2.0", { auth = "Token x", json = {} })
    assert.are.equal(401, r.status)
    assert.are.equal(401, r.json.code)
  end)

  it("reports failure and moderation with task error codes", function()
    emu:next{ polls = 1, outcome = "failed" }
    emu:next{ polls = 1, outcome = "moderated" }
    local a, b = ws_submit().json.data, ws_submit().json.data
    local da = call("GET", path_of(a.urls.get), { auth = BEARER }).json.data
    local db = call("GET", path_of(b.urls.get), { auth = BEARER }).json.data
    assert.are.equal("failed", da.status)
    assert.are.equal(1403, da.code)
    assert.is_true(#da.error > 0)
    assert.are.equal("failed", db.status)
    assert.are.equal(1200, db.code)
    assert.are.same({ true }, db.has_nsfw_contents)
  end)

  it("blocks in sync mode until the result is ready", function()
    emu:next{ seconds = 0.2 }
    local r = ws_submit{ enable_sync_mode = true }
    assert.are.equal(200, r.status)
    assert.are.equal("completed", r.json.data.status)
    assert.are.equal(1, #r.json.data.outputs)
  end)

  it("answers a sync-mode timeout as processing with code 5004", function()
    emu:reset{ sync_timeout = 0.2 }
    emu:next{ seconds = 60 }
    local r = ws_submit{ enable_sync_mode = true }
    assert.are.equal(200, r.status)
    assert.are.equal("processing", r.json.data.status)
    assert.are.equal(5004, r.json.data.code)
    assert.matches("Sync mode timed out", r.json.data.error)
  end)

  it("uploads media (PUT URL and binary multipart)", function()
    local r = call("POST", "/api/v3/media/uploads", { auth = BEARER,
      json = { filename = "a.png", size = #PNG, content_type = "image/png" } })
    assert.are.equal(200, r.status)
    local up = r.json.data.upload
    assert.are.equal("PUT", up.method)
    assert.are.equal(200, call("PUT", path_of(up.url), { body = PNG, headers = up.headers }).status)
    assert.are.equal(PNG, call("GET", path_of(r.json.data.download_url)).body)
    assert.are.equal(200, ws_submit{ image = r.json.data.download_url }.status)

    local boundary = "XyZ123"
    local body = "--" .. boundary
      .. "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.jpg\"\r\n"
      .. "Content-Type: image/jpeg\r\n\r\n" .. JPEG .. "\r\n--" .. boundary .. "--\r\n"
    local m = call("POST", "/api/v3/media/upload/binary", { auth = BEARER, body = body,
      headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary } })
    assert.are.equal(200, m.status, m.body)
    assert.are.equal(JPEG, call("GET", path_of(m.json.data.download_url)).body)
  end)

  it("serves one webhook secret per key", function()
    local a = call("GET", "/api/v3/webhook/secret", { auth = BEARER }).json.data.secret
    local a2 = call("GET", "/api/v3/webhook/secret", { auth = BEARER }).json.data.secret
    local b = call("GET", "/api/v3/webhook/secret", { auth = "Bearer other" }).json.data.secret
    assert.matches("^whsec_", a)
    assert.are.equal(a, a2)
    assert.are_not.equal(a, b)
  end)
end)

describe("emulator Vtrix API", function()
  it("accepts the input[].params form and the flat form", function()
    for _, flat in ipairs({ false, true }) do
      emu:next{ polls = 2 }
      local r = vtrix_submit(nil, flat)
      assert.are.equal(200, r.status, r.body)
      assert.are.equal("in_progress", r.json.status)
      assert.are.equal(r.json.id, r.json.task_id)
      local p = "/model/v1/generation/task/" .. r.json.id
      local t1 = call("GET", p, { auth = BEARER }).json
      assert.are.equal("in_progress", t1.status)
      assert.is_nil(t1.output)
      local t2 = call("GET", p, { auth = BEARER }).json
      assert.are.equal("completed", t2.status)
      assert.are.equal("video", t2.output[1].content[1].type)
      assert.are.equal("0.40", t2.usage.cost)
      assert.are.equal(1, t2.progress)
      assert_mp4(call("GET", path_of(t2.output[1].content[1].url), { timeout = 60 }).body, 5)
    end
  end)

  local rows = {
    { "missing image", { images = ejson.null }, 8008003001 },
    { "empty images", { images = ejson.array() }, 8008003001 },
    { "two images", { images = { DATA_URI, DATA_URI } }, 8008003002 },
    { "duration 4", { duration = 4 }, 8008003002 },
    { "resolution 720p", { resolution = "720p" }, 8008003002 },
    { "prompt over 2000", { prompt = string.rep("b", 2001) }, 8008003002 },
    { "bad image", { images = { "data:image/png;base64," .. core.b64encode("not an image") } }, 8008003004 },
    { "aspect 10:1", { images = { WIDE_URI } }, 8008003004 },
  }
  for _, row in ipairs(rows) do
    it("rejects " .. row[1] .. " with code " .. row[3], function()
      local r = vtrix_submit(row[2])
      assert.are.equal(400, r.status, r.body)
      assert.are.equal(row[3], r.json.error.code)
      assert.is_string(r.json.error.message)
    end)
  end

  it("rejects another model and a missing key", function()
    local r = call("POST", "/model/v1/generation", { auth = BEARER, json = { model = "other",
      input = { { params = { images = { DATA_URI } } } } } })
    assert.are.equal(8008003002, r.json.error.code)
    r = call("POST", "/model/v1/generation", { json = {} })
    assert.are.equal(401, r.status)
  end)

  it("reports a failed generation with 8008003098", function()
    emu:next{ polls = 1, outcome = "failed" }
    local id = vtrix_submit().json.id
    local t = call("GET", "/model/v1/generation/task/" .. id, { auth = BEARER }).json
    assert.are.equal("failed", t.status)
    assert.are.equal(8008003098, t.error.code)
    assert.is_nil(t.usage)
    assert.are.equal(404, call("GET", "/model/v1/generation/task/nope", { auth = BEARER }).status)
  end)
end)

describe("emulator faults", function()
  it("status: answers the status in the provider's shape with Retry-After, without processing", function()
    emu:fault{ method = "POST", path = "/ent/v2/img2video", kind = "status", status = 503, retry_after = "2" }
    local r = vidu_submit()
    assert.are.equal(503, r.status)
    assert.are.equal("2", r.headers["retry-after"])
    assert.are.equal(503, r.json.code)
    assert.is_string(r.json.reason)
    assert.are.equal(0, task_count())
    assert.are.equal(200, vidu_submit().status) -- times = 1 by default
  end)

  it("status: a given body and headers", function()
    emu:fault{ path = "/api/v3/vidu/image-to-video-2.0", kind = "status", status = 429,
      body = '{"code":429,"message":"slow down"}', headers = { ["X-Test"] = "1" } }
    local r = ws_submit()
    assert.are.equal(429, r.status)
    assert.are.equal("slow down", r.json.message)
    assert.are.equal("1", r.headers["x-test"])
  end)

  it("status: fal infrastructure errors carry error_type", function()
    emu:fault{ match = "^/fal%-ai/", kind = "status", status = 504 }
    local r = fal_submit()
    assert.are.equal(504, r.status)
    assert.are.equal("request_timeout", r.json.error_type)
    assert.are.equal("request_timeout", r.headers["x-fal-error-type"])
  end)

  -- times = 2: libcurl silently re-sends a request once on a fresh connection when a reused
  -- keep-alive connection dies before any answer byte (it does so for a POST too).
  it("reset_before: the connection is reset and nothing is created", function()
    emu:fault{ path = "/ent/v2/img2video", kind = "reset_before", times = 2 }
    local r = vidu_submit()
    assert.is_false(r.ok)
    assert.are.equal("reset", r.error)
    assert.are.equal(0, task_count())
  end)

  it("reset_after: the task is created, then the connection is reset", function()
    emu:fault{ path = "/ent/v2/img2video", kind = "reset_after", times = 2 }
    local r = vidu_submit()
    assert.is_false(r.ok)
    assert.are.equal("reset", r.error)
    assert.is_true(task_count() >= 1)
  end)

  it("hang: never answers", function()
    emu:fault{ path = "/ent/v2/tasks/1/creations", kind = "hang" }
    local r = call("GET", "/ent/v2/tasks/1/creations", { auth = VIDU, timeout = 0.5 })
    assert.is_false(r.ok)
    assert.are.equal("timeout", r.error)
  end)

  it("latency: answers normally, later", function()
    emu:fault{ path = "/ent/v2/img2video", kind = "latency", latency_ms = 50 }
    local r = vidu_submit()
    assert.are.equal(200, r.status)
    assert.are.equal("latency", emu:requests{ path = "/ent/v2/img2video" }[1].fault)
  end)

  it("truncate: the body stops short of its Content-Length", function()
    emu:fault{ path = "/ent/v2/img2video", kind = "truncate" }
    local r = vidu_submit()
    assert.is_false(r.ok)
    assert.are.equal("reset", r.error)
    assert.are.equal(1, task_count())
  end)

  it("malformed_json: a 2xx answer that is not JSON", function()
    emu:fault{ path = "/ent/v2/img2video", kind = "malformed_json" }
    local r = vidu_submit()
    assert.are.equal(200, r.status)
    assert.are.equal("application/json", r.headers["content-type"])
    assert.is_false((pcall(cjson.decode, r.body)))
  end)

  it("html_502: an nginx gateway page", function()
    emu:fault{ path = "/fal-ai/vidu/q1/image-to-video", kind = "html_502" }
    local r = fal_submit()
    assert.are.equal(502, r.status)
    assert.matches("^text/html", r.headers["content-type"])
    assert.matches("nginx", r.body)
    assert.is_nil(r.headers["x-fal-request-id"])
    assert.are.equal(0, task_count())
  end)

  it("fires `times` times, then lets requests through; filters by method", function()
    emu:fault{ method = "GET", match = "/creations$", kind = "status", status = 500, times = 2 }
    local id = vidu_submit().json.task_id
    local p = "/ent/v2/tasks/" .. id .. "/creations"
    assert.are.equal(500, call("GET", p, { auth = VIDU }).status)
    assert.are.equal(500, call("GET", p, { auth = VIDU }).status)
    assert.are.equal(200, call("GET", p, { auth = VIDU }).status)
    local list = emu:control("GET", "/_emulator/faults").faults
    assert.are.equal(2, list[1].fired)
  end)

  it("probabilistic faults follow their seed", function()
    local function run()
      emu:reset()
      emu:fault{ path = "/api/v3/predictions/x/result", kind = "status", status = 503,
        probability = 0.5, seed = 99 }
      local seq = {}
      for i = 1, 30 do
        seq[i] = call("GET", "/api/v3/predictions/x/result", { auth = BEARER }).status
      end
      return seq
    end
    local a, b = run(), run()
    assert.are.same(a, b)
    local n503 = 0
    for _, s in ipairs(a) do if s == 503 then n503 = n503 + 1 end end
    assert.is_true(n503 > 0 and n503 < 30)
  end)

  it("accepts a list of faults and rejects bad ones", function()
    local v = emu:fault{ { path = "/a", kind = "hang" }, { path = "/b", kind = "html_502" } }
    assert.are.equal(2, #v.ids)
    local _, status = emu:fault{ kind = "explode" }
    assert.are.equal(400, status)
    _, status = emu:fault{ kind = "status", probability = 2 }
    assert.are.equal(400, status)
    _, status = emu:fault{ kind = "status", match = "[" }
    assert.are.equal(400, status)
    assert.are.same({ ok = true }, (emu:control("DELETE", "/_emulator/faults")))
    assert.are.equal(0, #emu:control("GET", "/_emulator/faults").faults)
  end)
end)

describe("emulator routes", function()
  it("answers unknown paths with 404 in the provider's shape and wrong methods with 405", function()
    local r = call("GET", "/ent/v2/nothing", { auth = VIDU })
    assert.are.equal(404, r.status)
    assert.are.equal("NotFound", r.json.reason)
    r = call("GET", "/ent/v2/img2video", { auth = VIDU })
    assert.are.equal(405, r.status)
    assert.is_string(r.headers.allow)
    r = call("GET", "/media/v/nothing.mp4")
    assert.are.equal(404, r.status)
  end)
end)

-- Every upload flow hands back a reference (a URL under /media/u/ or an ssupload: URI) that the
-- same emulator must take as the uploaded bytes: the video is made from them, so its media key
-- (image fingerprint, duration, amplitude) equals that of a data-URI submit of the same image.
describe("emulator upload round trips", function()
  -- Each flow uploads `bytes` and returns the reference a client passes as the image.
  local function fal_initiate(bytes)
    local r = call("POST", "/storage/upload/initiate?storage_type=fal-cdn-v3", { auth = FAL,
      json = { file_name = "a.jpg", content_type = "image/jpeg" } })
    call("PUT", path_of(r.json.upload_url), { body = bytes, headers = { ["Content-Type"] = "image/jpeg" } })
    return r.json.file_url
  end
  local function fal_cdn(bytes)
    local t = call("POST", "/storage/auth/token", { auth = FAL, json = {} }).json
    return call("POST", "/files/upload", { body = bytes, headers = { Authorization = "Bearer " .. t.token,
      ["Content-Type"] = "image/jpeg", ["X-Fal-File-Name"] = "a.jpg" } }).json.access_url
  end
  local function vidu_three_step(bytes)
    local r = call("POST", "/tools/v2/files/uploads", { auth = VIDU, json = { scene = "vidu" } }).json
    local put = call("PUT", path_of(r.put_url), { body = bytes })
    return call("PUT", "/tools/v2/files/uploads/" .. r.id .. "/finish", { auth = VIDU,
      json = { etag = put.headers.etag } }).json.uri
  end
  local function ws_put(bytes)
    local d = call("POST", "/api/v3/media/uploads", { auth = BEARER,
      json = { filename = "a.jpg", size = #bytes, content_type = "image/jpeg" } }).json.data
    call("PUT", path_of(d.upload.url), { body = bytes, headers = d.upload.headers })
    return d.download_url
  end
  local function ws_binary(bytes)
    local body = "--B0\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
      .. "Content-Type: image/jpeg\r\n\r\n" .. bytes .. "\r\n--B0--\r\n"
    return call("POST", "/api/v3/media/upload/binary", { auth = BEARER, body = body,
      headers = { ["Content-Type"] = "multipart/form-data; boundary=B0" } }).json.data.download_url
  end

  -- Each provider: submit with an image reference -> the new task's id.
  local submit = {
    fal = function(ref) return fal_submit{ image_url = ref }.json.request_id end,
    vidu = function(ref) return vidu_submit{ images = { ref } }.json.task_id end,
    wavespeed = function(ref) return ws_submit{ image = ref }.json.data.id end,
  }

  -- The media key of a task's video: <image fingerprint>-<duration>-<amplitude>.
  local function media_key(id)
    local url = emu:task(id).task.video_url
    return url:match("/media/v/([^/]+)%.mp4$")
  end

  local rows = {
    { "fal initiate + PUT (file_url)", "fal", fal_initiate },
    { "fal v3 CDN token (access_url)", "fal", fal_cdn },
    { "Vidu three-step (ssupload: uri)", "vidu", vidu_three_step },
    { "WaveSpeed PUT URL (download_url)", "wavespeed", ws_put },
    { "WaveSpeed binary multipart (download_url)", "wavespeed", ws_binary },
  }
  for _, row in ipairs(rows) do
    it(row[1] .. ": the video is made from the uploaded image", function()
      local ref = row[3](JPEG)
      assert.is_string(ref)
      local via_upload = media_key(submit[row[2]](ref))
      local direct = media_key(submit[row[2]](JPEG_URI))
      assert.is_string(direct)
      assert.are_not.equal("none", direct:match("^([^-]+)"))
      assert.are.equal(direct, via_upload)
    end)
  end

  it("refuses an upload URL of its own that names no upload", function()
    local gone = emu.url .. "/media/u/0123456789abcdef01234567/a.jpg"
    local f = fal_submit{ image_url = gone }
    assert.are.equal(422, f.status)
    assert.are.equal("file_download_error", f.json.detail[1].type)
    local w = ws_submit{ image = gone }
    assert.are.equal(400, w.status)
    assert.matches("media access failed", w.json.message)
  end)
end)

describe("emulator JSON input", function()
  it("refuses NaN and Infinity (not JSON) in provider and control bodies alike", function()
    local r = call("POST", "/ent/v2/img2video", { auth = VIDU,
      json = '{"model":"viduq1","images":["' .. DATA_URI .. '"],"prompt":"p","seed":NaN}' })
    assert.are.equal(400, r.status)
    assert.are.equal("BadRequest", r.json.reason)
    local c = call("POST", "/_emulator/config", { json = '{"polls":Infinity}' })
    assert.are.equal(400, c.status)
    assert.matches("NaN and Infinity", c.json.error)
    assert.are.equal(0, task_count())
  end)
end)

describe("emulator relay viduq2 models", function()
  -- The same range the client checks (validate.lua): 1..10 s at 540p, 720p or 1080p.
  local rows = {
    { "viduq2-pro", 10, "1080p", 200 },
    { "viduq2-turbo", 1, "540p", 200 },
    { "viduq2-turbo", 11, "720p", 400 },
    { "viduq2-pro", 5, "360p", 400 },
  }
  for _, row in ipairs(rows) do
    it(string.format("%s %d s %s -> %d", row[1], row[2], row[3], row[4]), function()
      local r = call("POST", "/vidu/v2/img2video", { auth = BEARER, json = { model = row[1],
        images = { DATA_URI }, prompt = "x", duration = row[2], resolution = row[3] } })
      assert.are.equal(row[4], r.status, r.body)
    end)
  end
end)

describe("emulator relay prompt limits", function()
  -- The same limits the client checks: 2000 characters for viduq2, 1500 for the older models.
  local rows = {
    { "viduq2-pro", 2000, 200 },
    { "viduq2-turbo", 2001, 400 },
    { "viduq1", 1500, 200 },
    { "viduq1", 1501, 400 },
    { "vidu2.0", 1501, 400 },
  }
  for _, row in ipairs(rows) do
    it(string.format("%s, %d characters -> %d", row[1], row[2], row[3]), function()
      local r = call("POST", "/vidu/v2/img2video", { auth = BEARER, json = { model = row[1],
        images = { DATA_URI }, prompt = string.rep("é", row[2]) } })
      assert.are.equal(row[3], r.status, r.body)
    end)
  end
end)
