-- The emulator behaving like the real services where the clients meet them (issue 8), over
-- HTTP to a real emulator process: Vidu's model rules read from the client's own table, Vidu's
-- image size limit on inline images and uploads, Vidu's cancel state and progress, expiring
-- media URLs for every provider, WaveSpeed's flagged outputs, Vtrix's balance answer and string
-- codes, and the type checks of the config keys behind them. No test sleeps for a fixed time:
-- expiry is driven by the TTL (0 expires at once) or awaited with a deadline.
local core = require("vidu.core")
local ejson = require("vidu.emulator.json")
local models = require("vidu.providers.vidu_models")
local emulator = require("support.emulator")
local util = require("support.util")

local PNG = util.read_file("spec/fixtures/png_640x360.png")
local DATA_URI = "data:image/png;base64," .. core.b64encode(PNG)
local VIDU, BEARER, FAL = "Token vidu-key", "Bearer test-key", "Key fal-id:fal-secret"

-- A PNG of exactly `size` bytes: a 640x360 header, then zeros (every header check passes).
local function png_of(size)
  local function be32(n)
    return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
      math.floor(n / 256) % 256, n % 256)
  end
  local head = "\137PNG\r\n\26\n\0\0\0\13IHDR" .. be32(640) .. be32(360) .. "\8\2\0\0\0\0\0\0\0"
  return head .. string.rep("\0", size - #head)
end

local emu

local function call(method, where, opts) return emu:call(method, where, opts) end

local function sorted_keys(t)
  local k = {}
  for name in pairs(t) do k[#k + 1] = name end
  table.sort(k)
  return k
end

local function vidu_submit(fields, base, auth)
  local b = { model = "viduq1", images = { DATA_URI }, prompt = "The astronaut waved." }
  for k, v in pairs(fields or {}) do b[k] = v end
  return call("POST", (base or "/ent/v2") .. "/img2video", { auth = auth or VIDU, json = b })
end

local function creations(id, base, auth)
  return call("GET", (base or "/ent/v2") .. "/tasks/" .. id .. "/creations", { auth = auth or VIDU })
end

setup(function()
  emu = emulator.start{ seed = 11, args = { "--no-ffmpeg" } }
end)

teardown(function()
  if emu then emu:stop() end
end)

before_each(function()
  emu:reset()
end)

-- One model table, read by the client's validation and by the emulator.
for _, flavour in ipairs({ { "vidu", "/ent/v2", VIDU }, { "relay", "/vidu/v2", BEARER } }) do
  local name, base, auth = flavour[1], flavour[2], flavour[3]
  describe("emulator " .. name .. " model rules from vidu.providers.vidu_models", function()
    for _, model in ipairs(sorted_keys(models[name])) do
      local m = models[name][model]
      it(model .. ": its default, every duration and resolution it lists, nothing beyond", function()
        local r = vidu_submit({ model = model }, base, auth)
        assert.are.equal(200, r.status, r.body)
        assert.are.equal(m.default_duration, r.json.duration)
        assert.are.equal(models.default_resolution(m, m.default_duration), r.json.resolution)
        local durations, bad
        if m.duration_range then
          local lo, hi = m.duration_range[1], m.duration_range[2]
          durations = { lo, hi }
          bad = { lo - 1, hi + 1 }
        else
          durations = m.durations
          bad = { 6, 0 }
        end
        for _, d in ipairs(durations) do
          local allowed = m.any_resolution or m.resolutions[d]
          for _, res in ipairs(allowed) do
            local ok = vidu_submit({ model = model, duration = d, resolution = res }, base, auth)
            assert.are.equal(200, ok.status, model .. " " .. d .. "s " .. res .. ": " .. ok.body)
            assert.are.equal(res, ok.json.resolution)
          end
          for _, res in ipairs({ "360p", "540p", "720p", "1080p" }) do
            local listed = false
            for _, a in ipairs(allowed) do listed = listed or a == res end
            if not listed then
              local no = vidu_submit({ model = model, duration = d, resolution = res }, base, auth)
              assert.are.equal(400, no.status, model .. " " .. d .. "s " .. res)
              assert.are.equal("FieldInvalid", no.json.reason)
            end
          end
        end
        for _, d in ipairs(bad) do
          local no = vidu_submit({ model = model, duration = d }, base, auth)
          assert.are.equal(400, no.status, model .. " " .. d .. "s")
          assert.are.equal("FieldInvalid", no.json.reason)
          assert.matches("duration", no.json.message)
        end
        local max = m.prompt_max or 1500
        local at_max = vidu_submit({ model = model, prompt = string.rep("é", max) }, base, auth)
        assert.are.equal(200, at_max.status)
        local long = vidu_submit({ model = model, prompt = string.rep("é", max + 1) }, base, auth)
        assert.are.equal(400, long.status)
        assert.are.equal("prompt exceeds " .. max .. " characters", long.json.message)
      end)
    end
  end)
end

describe("emulator Vidu model rules, named cases", function()
  -- { model, duration, resolution, status, message fragment }
  local rows = {
    { "viduq3-pro", 16, "1080p", 200 },
    { "viduq3-turbo", 1, "540p", 200 },
    { "viduq3-pro", 17, nil, 400, "accepted: 1..16" },
    { "viduq3-pro-fast", 5, "540p", 400, "accepted: 720p, 1080p" },
    { "viduq2-pro-fast", 5, "540p", 400, "accepted: 720p, 1080p" },
    { "viduq2-turbo", 11, nil, 400, "accepted: 1..10" },
    { "viduq1-classic", 5, "1080p", 200 },
    { "vidu1.5", 8, "720p", 200 }, -- no longer listed by Vidu, kept as legacy
    { "vidu2.0", 6, nil, 400, "accepted: 4, 8" },
  }
  for _, row in ipairs(rows) do
    it(string.format("%s %ds %s -> %d", row[1], row[2], tostring(row[3]), row[4]), function()
      local r = vidu_submit{ model = row[1], duration = row[2], resolution = row[3] }
      assert.are.equal(row[4], r.status, r.body)
      if row[5] then
        assert.are.equal(400, r.json.code)
        assert.are.equal("FieldInvalid", r.json.reason)
        assert.truthy(r.json.message:find(row[5], 1, true), r.json.message)
        assert.is_string(r.json.metadata.trace_id)
      end
    end)
  end

  it("names every model it accepts when refusing one", function()
    local r = vidu_submit{ model = "vidu9" }
    assert.are.equal(400, r.status)
    for _, model in ipairs(sorted_keys(models.vidu)) do
      assert.truthy(r.json.message:find(model, 1, true), model)
    end
  end)
end)

describe("emulator Vidu image size", function()
  -- The three steps -> the finish answer (and the PUT answer).
  local function upload(bytes)
    local r = call("POST", "/tools/v2/files/uploads", { auth = VIDU, json = { scene = "vidu" } })
    assert.are.equal(200, r.status)
    local put = call("PUT", r.json.put_url, { body = bytes, headers = { ["Content-Type"] = "image/png" } })
    if put.status ~= 200 then return nil, put end
    local fin = call("PUT", "/tools/v2/files/uploads/" .. r.json.id .. "/finish", { auth = VIDU,
      json = { etag = put.headers.etag } })
    return fin, put
  end

  local function assert_envelope(r, status, reason)
    assert.are.equal(status, r.status, r.body)
    assert.are.equal(status, r.json.code)
    assert.are.equal(reason, r.json.reason)
    assert.is_string(r.json.message)
    assert.is_string(r.json.metadata.trace_id)
  end

  it("finishes an upload under 10,000,000 bytes and refuses one of 10,000,000 at finish", function()
    local ok = upload(png_of(9999999))
    assert.are.equal(200, ok.status, ok.body)
    assert.matches("^ssupload:", ok.json.uri)
    assert.are.equal(200, vidu_submit{ images = { ok.json.uri } }.status)
    local big = upload(png_of(10000000))
    assert_envelope(big, 400, "PageSizeOutOfRange")
    assert.matches("less than 10MB", big.json.message)
    assert.is_nil(big.json.uri)
  end)

  it("vidu_upload_refuse_at = \"put\": the storage refuses the PUT with S3's XML", function()
    emu:config{ vidu_upload_refuse_at = "put" }
    local fin, put = upload(png_of(10000000))
    assert.is_nil(fin)
    assert.are.equal(400, put.status)
    assert.are.equal("application/xml", put.headers["content-type"])
    assert.matches("<Code>EntityTooLarge</Code>", put.body)
    assert.are.equal(200, upload(png_of(9999999)).status)
  end)

  it("vidu_upload_refuse_at = \"submit\": finish succeeds, img2video refuses the image", function()
    emu:config{ vidu_upload_refuse_at = "submit" }
    local fin = upload(png_of(10000000))
    assert.are.equal(200, fin.status)
    local r = vidu_submit{ images = { fin.json.uri } }
    assert_envelope(r, 400, "PageSizeOutOfRange")
  end)

  it("vidu_max_image_bytes moves the limit (10 MiB: the binary reading)", function()
    emu:config{ vidu_max_image_bytes = 10485760 }
    assert.are.equal(200, upload(png_of(10000000)).status)
    assert_envelope(upload(png_of(10485760)), 400, "PageSizeOutOfRange")
  end)

  it("takes an inline image that decodes under 10,000,000 bytes, not one of 10,000,000", function()
    local ok = vidu_submit{ images = { "data:image/png;base64," .. core.b64encode(png_of(9999999)) } }
    assert.are.equal(200, ok.status, ok.body)
    local big = vidu_submit{ images = { "data:image/png;base64," .. core.b64encode(png_of(10000000)) } }
    assert_envelope(big, 400, "PageSizeOutOfRange")
    assert.matches("under 10MB", big.json.message)
  end)
end)

describe("emulator Vidu states and progress", function()
  it("a canceled task reads failed/UserCancelled by default, canceled with vidu_cancel_state", function()
    for _, case in ipairs({ { nil, "failed" }, { "canceled", "canceled" } }) do
      emu:reset{ vidu_cancel_state = case[1] }
      emu:next{ polls = 10 }
      local id = vidu_submit().json.task_id
      local c = call("POST", "/ent/v2/tasks/" .. id .. "/cancel", { auth = VIDU, json = { id = id } })
      assert.are.equal(200, c.status)
      local q = creations(id).json
      assert.are.equal(case[2], q.state)
      assert.are.equal("UserCancelled", q.err_code)
      assert.are.equal(0, #q.creations)
      -- Terminal either way: polling again changes nothing, and a second cancel is refused.
      assert.are.equal(case[2], creations(id).json.state)
      local again = call("POST", "/ent/v2/tasks/" .. id .. "/cancel", { auth = VIDU, json = { id = id } })
      assert.are.equal(400, again.status)
      assert.matches("task state is " .. case[2], again.json.message)
    end
  end)

  it("carries progress, 0 while queued, rising while processing, 100 on success", function()
    emu:next{ polls = 6 }
    local id = vidu_submit().json.task_id
    local seen, states = {}, {}
    for i = 1, 6 do
      local j = creations(id).json
      seen[i], states[i] = j.progress, j.state
      assert.is_number(j.progress)
    end
    assert.are.same({ "queueing", "queueing", "processing", "processing", "processing", "success" }, states)
    assert.are.equal(0, seen[1])
    for i = 3, 5 do
      assert.is_true(seen[i] >= 1 and seen[i] <= 99, tostring(seen[i]))
      assert.is_true(seen[i] > seen[i - 1], "progress rises: " .. table.concat(seen, ","))
    end
    assert.are.equal(100, seen[6])
  end)

  it("keeps the last progress shown when the task fails", function()
    emu:next{ polls = 4, outcome = "failed" }
    local id = vidu_submit().json.task_id
    local last
    for _ = 1, 4 do
      local j = creations(id).json
      if j.state == "processing" then last = j.progress end
    end
    local j = creations(id).json
    assert.are.equal("failed", j.state)
    assert.is_number(last)
    assert.are.equal(last, j.progress)
  end)

  it("the relay passes progress through too", function()
    emu:next{ polls = 1 }
    local id = vidu_submit({}, "/vidu/v2", BEARER).json.task_id
    assert.are.equal(100, creations(id, "/vidu/v2", BEARER).json.progress)
  end)
end)

-- Each provider: submit, then poll until done -> the media URLs of the finished task, and a
-- function that polls once more and returns them again.
local function ws_image() return { prompt = "p", image = DATA_URI } end
local MEDIA = {
  vidu = function()
    emu:next{ polls = 1 }
    local id = vidu_submit{ watermark = true }.json.task_id
    return function()
      local c = creations(id).json.creations[1]
      return { c.url, c.cover_url, c.watermarked_url }
    end
  end,
  fal = function()
    emu:next{ polls = 1 }
    local j = call("POST", "/fal-ai/vidu/q1/image-to-video", { auth = FAL,
      json = { prompt = "p", image_url = DATA_URI } }).json
    call("GET", j.status_url, { auth = FAL })
    return function() return { call("GET", j.response_url, { auth = FAL }).json.video.url } end
  end,
  wavespeed = function()
    emu:next{ polls = 1 }
    local d = call("POST", "/api/v3/vidu/image-to-video-2.0", { auth = BEARER, json = ws_image() }).json.data
    return function() return { call("GET", d.urls.get, { auth = BEARER }).json.data.outputs[1] } end
  end,
  vtrix = function()
    emu:next{ polls = 1 }
    local id = call("POST", "/model/v1/generation", { auth = BEARER, json = { model = "viduq1_img2video",
      input = { { params = { images = { DATA_URI }, prompt = "p" } } } } }).json.id
    return function()
      local t = call("GET", "/model/v1/generation/task/" .. id, { auth = BEARER }).json
      return { t.output[1].content[1].url }
    end
  end,
}

describe("emulator expiring media URLs (media_ttl)", function()
  it("hands out plain URLs that never expire by default", function()
    local urls = MEDIA.vidu()()
    for _, u in ipairs(urls) do
      assert.is_nil(u:find("expires=", 1, true))
      assert.are.equal(200, call("GET", u).status)
    end
  end)

  for _, name in ipairs({ "vidu", "fal", "wavespeed", "vtrix" }) do
    it(name .. ": every media URL carries its expiry; expired -> 403 S3 XML; a new poll is fresh",
      function()
      emu:config{ media_ttl = 0 }
      local again = MEDIA[name]()
      local urls = again()
      assert.is_true(#urls >= 1)
      for _, u in ipairs(urls) do
        assert.matches("[?&]expires=%d+&sig=%x+$", u)
        local r = call("GET", u)
        assert.are.equal(403, r.status, u)
        assert.are.equal("application/xml", r.headers["content-type"])
        assert.matches("<Error><Code>AccessDenied</Code><Message>Request has expired</Message>", r.body)
        assert.are.equal(403, call("HEAD", u).status)
      end
      emu:config{ media_ttl = 3600 }
      local fresh = again()
      for i, u in ipairs(fresh) do
        assert.are_not.equal(urls[i], u)
        local expires = tonumber(u:match("expires=(%d+)"))
        assert.is_true(expires >= os.time() + 3000)
        local r = call("GET", u)
        assert.are.equal(200, r.status, u)
      end
    end)
  end

  it("expires a link when its time comes, and the task gives a fresh one", function()
    emu:config{ media_ttl = 2 }
    local again = MEDIA.wavespeed()
    local u = again()[1]
    assert.are.equal(200, call("GET", u).status)
    local status = emu:wait_for(function()
      local s = call("GET", u).status
      return s ~= 200 and s
    end, 30)
    assert.are.equal(403, status)
    assert.are.equal(200, call("GET", again()[1]).status)
  end)

  it("refuses a link whose expiry was changed, and a bare URL while media_ttl is set", function()
    emu:config{ media_ttl = 60 }
    local u = MEDIA.vidu()()[1]
    local moved = u:gsub("expires=(%d+)", function(e) return "expires=" .. (tonumber(e) + 3600) end)
    local r = call("GET", moved)
    assert.are.equal(403, r.status)
    assert.matches("<Code>AccessDenied</Code>", r.body)
    assert.are.equal(403, call("GET", (u:gsub("%?.*$", ""))).status)
    assert.are.equal(200, call("GET", u).status)
  end)
end)

describe("emulator WaveSpeed flagged outputs (outcome nsfw)", function()
  it("completes with its outputs and has_nsfw_contents [true]", function()
    emu:next{ polls = 1, outcome = "nsfw" }
    local d = call("POST", "/api/v3/vidu/image-to-video-2.0", { auth = BEARER, json = ws_image() }).json.data
    local r = call("GET", d.urls.get, { auth = BEARER })
    assert.are.equal(200, r.status)
    local data = r.json.data
    assert.are.equal("completed", data.status)
    assert.are.equal(1, #data.outputs)
    assert.are.same({ true }, data.has_nsfw_contents)
    assert.are.equal(0, data.code)
    assert.are.equal("", data.error)
    assert.are.equal(200, call("GET", data.outputs[1]).status)
    assert.are.equal("nsfw", emu:task(d.id).task.outcome)
    assert.is_true(emu:task(d.id).task.nsfw)
  end)

  it("an unflagged success says [false]; nsfw is a run-level outcome too", function()
    emu:next{ polls = 1 }
    local d = call("POST", "/api/v3/vidu/image-to-video-2.0", { auth = BEARER, json = ws_image() }).json.data
    assert.are.same({ false }, call("GET", d.urls.get, { auth = BEARER }).json.data.has_nsfw_contents)
    local v, status = emu:config{ outcome = "nsfw", polls = 1 }
    assert.are.equal(200, status)
    assert.are.equal("nsfw", v.config.outcome)
    d = call("POST", "/api/v3/vidu/image-to-video-2.0", { auth = BEARER, json = ws_image() }).json.data
    assert.are.same({ true }, call("GET", d.urls.get, { auth = BEARER }).json.data.has_nsfw_contents)
  end)

  it("other providers answer an nsfw outcome as a success", function()
    emu:next{ polls = 1, outcome = "nsfw" }
    local id = vidu_submit().json.task_id
    local j = creations(id).json
    assert.are.equal("success", j.state)
    assert.are.equal(1, #j.creations)
  end)
end)

describe("emulator Vtrix balance and string codes", function()
  it("a 403 fault answers Vtrix's insufficient-balance body, code as a string", function()
    emu:fault{ method = "POST", path = "/model/v1/generation", kind = "status", status = 403 }
    local r = call("POST", "/model/v1/generation", { auth = BEARER, json = { model = "viduq1_img2video",
      input = { { params = { images = { DATA_URI } } } } } })
    assert.are.equal(403, r.status)
    assert.are.equal("application/json", r.headers["content-type"])
    assert.are.same({ error = { code = "002014001", message = "Insufficient balance" } }, r.json)
    assert.are.equal(0, emu:control("GET", "/_emulator/health").tasks)
  end)

  it("vtrix_string_codes = true: a failed task's code, and error answers' codes, are strings", function()
    emu:next{ polls = 1, outcome = "failed" }
    local params = { images = { DATA_URI }, prompt = "p" }
    local id = call("POST", "/model/v1/generation", { auth = BEARER, json = { model = "viduq1_img2video",
      input = { { params = params } } } }).json.id
    local first = call("GET", "/model/v1/generation/task/" .. id, { auth = BEARER })
    assert.are.equal(8008003098, first.json.error.code)
    emu:config{ vtrix_string_codes = true }
    emu:next{ polls = 1, outcome = "failed" }
    id = call("POST", "/model/v1/generation", { auth = BEARER, json = { model = "viduq1_img2video",
      input = { { params = params } } } }).json.id
    local t = call("GET", "/model/v1/generation/task/" .. id, { auth = BEARER })
    assert.are.equal("failed", t.json.status)
    assert.are.equal("8008003098", t.json.error.code)
    assert.truthy(t.body:find('"code":"8008003098"', 1, true))
    local bad = call("POST", "/model/v1/generation", { auth = BEARER, json = { model = "viduq1_img2video",
      input = { { params = { images = { DATA_URI }, duration = 4 } } } } })
    assert.are.equal(400, bad.status)
    assert.are.equal("8008003002", bad.json.error.code)
  end)
end)

describe("emulator config keys of issue 8", function()
  local DEFAULTS = {
    media_ttl = false, vidu_cancel_state = "failed", vidu_max_image_bytes = 10000000,
    vidu_upload_refuse_at = "finish", fal_retryable_header = "omit", fal_min_start_timeout = 0.1,
    fal_start_timeout_type = "request_timeout", vtrix_string_codes = false,
  }

  it("has its defaults, takes good values and reset restores the defaults", function()
    local v = emu:control("GET", "/_emulator/config")
    for k, d in pairs(DEFAULTS) do assert.are.equal(d, v.config[k], k) end
    local good = { media_ttl = 30, vidu_cancel_state = "canceled", vidu_max_image_bytes = 10485760,
      vidu_upload_refuse_at = "submit", fal_retryable_header = "true", fal_min_start_timeout = 1,
      fal_start_timeout_type = "startup_timeout", vtrix_string_codes = true }
    local set, status = emu:config(good)
    assert.are.equal(200, status)
    for k, x in pairs(good) do assert.are.equal(x, set.config[k], k) end
    v = emu:reset()
    for k, d in pairs(DEFAULTS) do assert.are.equal(d, v.config[k], k) end
  end)

  -- { key, a bad value } -> 400 naming the key, on config and on reset alike
  local bad = {
    { "media_ttl", -1 }, { "media_ttl", "1h" }, { "media_ttl", true },
    { "vidu_cancel_state", "cancelled" }, { "vidu_cancel_state", 1 },
    { "vidu_max_image_bytes", 0 }, { "vidu_max_image_bytes", 1.5 }, { "vidu_max_image_bytes", "10MB" },
    { "vidu_upload_refuse_at", "create" },
    { "fal_retryable_header", false }, { "fal_retryable_header", "maybe" },
    { "fal_min_start_timeout", -0.5 }, { "fal_min_start_timeout", "1" },
    { "fal_start_timeout_type", "timeout" },
    { "vtrix_string_codes", "yes" },
    { "fal_stream", "off" }, { "fal_stream_cut_after", -1 }, { "fal_stream_cut_after", "2" },
    { "outcome", "flagged" },
  }
  for _, row in ipairs(bad) do
    it(string.format("refuses %s = %s", row[1], ejson.encode(row[2])), function()
      local v, status = emu:config{ [row[1]] = row[2] }
      assert.are.equal(400, status)
      assert.matches(row[1], v.error)
      if row[1] ~= "outcome" then
        v, status = emu:reset{ [row[1]] = row[2] }
        assert.are.equal(400, status)
        assert.matches(row[1], v.error)
      end
      assert.are_not.equal(row[2], emu:control("GET", "/_emulator/config").config[row[1]])
    end)
  end
end)
