-- Memory that does not grow with the image (issue 10): a client reads, encodes and uploads one
-- image once however many tasks use it, and a submit's JSON body is made only once its
-- connection slot is granted. Against the emulator; the emulator's request log and the
-- client's own counters tell what happened. No timing is asserted.
-- luacheck: max line length 130
local vidu = require("vidu")
local images = require("vidu.images")
local emulator = require("support.emulator")
local util = require("support.util")

local KEY = "test-key-0123456789"
local N = 20

local emu
local tmpdir

local function client_for(name, opts) return emu:client(name, KEY, opts) end

-- Submits `n` tasks at once from `n` coroutines; returns the tasks and the errors.
local function submit_many(client, n, params)
  local tasks, errs = {}, {}
  vidu.run(function()
    for i = 1, n do
      vidu.spawn(function()
        local p = { prompt = "cache " .. i }
        for k, v in pairs(params) do p[k] = v end
        local t, err = client:submit(p)
        if t then tasks[#tasks + 1] = t else errs[#errs + 1] = tostring(err) end
      end)
    end
  end)
  return tasks, errs
end

-- Two concurrent submits of `image`, each through vidu.pcall: whether the run ended well,
-- its error, and per submit "task", "nil" or the error it raised.
local function submit_two(client, image)
  local results = {}
  local ok, err = pcall(vidu.run, function()
    for i = 1, 2 do
      vidu.spawn(function()
        local good, t = vidu.pcall(client.submit, client, { prompt = "two " .. i, image = image })
        results[i] = good and (t and "task" or "nil") or tostring(t)
      end)
    end
  end)
  return ok, err, results
end

emulator.suite{ seed = 3, ready = function(e, d) emu, tmpdir = e, d end }

describe("the per-client image cache", function()
  it("uploads one local image once for 20 concurrent fal submits", function()
    local client = client_for("fal")
    local tasks, errs = submit_many(client, N, { image = "spec/fixtures/png_640x360.png" })
    assert.same({}, errs)
    assert.equal(N, #tasks)
    assert.equal(1, #emu:requests{ method = "POST", path = "/storage/upload/initiate" })
    assert.equal(1, #emu:requests{ method = "PUT", match = "^/media/put/" })
    assert.equal(N, #emu:requests{ method = "POST", path = "/fal-ai/vidu/q1/image-to-video" })
    local s = images.cache_stats(client)
    assert.equal(1, s.uploads)
    assert.equal(N - 1, s.hits)
    -- Every task's body carried the one file_url.
    local seen = {}
    for _, r in ipairs(emu:requests{ method = "POST", path = "/fal-ai/vidu/q1/image-to-video" }) do
      seen[require("vidu.json").decode(r.body).image_url or "none"] = true
    end
    local urls = {}
    for u in pairs(seen) do urls[#urls + 1] = u end
    assert.equal(1, #urls)
    assert.truthy(urls[1]:match("^https?://"))
  end)

  it("uploads again once the upload's URL is older than UPLOAD_TTL", function()
    local client = client_for("fal")
    local ttl = images.UPLOAD_TTL
    images.UPLOAD_TTL = 0
    local ok, err = pcall(submit_many, client, 2, { image = "spec/fixtures/png_640x360.png" })
    images.UPLOAD_TTL = ttl
    assert(ok, err)
    -- Two sequential uploads: the second task found the first's URL already expired.
    assert.equal(2, #emu:requests{ method = "POST", path = "/storage/upload/initiate" })
    assert.equal(2, images.cache_stats(client).uploads)
  end)

  it("an uploader that raises leaves the image's lock free: the next submit uploads", function()
    -- Two submits wait on the image's lock; the first one's upload raises. The error reaches
    -- the first submit, and the second takes the lock and uploads (before the fix it waited
    -- for the lock forever: the run ended in a deadlock).
    local fal = require("vidu.providers.fal")
    local upload, calls = fal.upload, 0
    fal.upload = function(...)
      calls = calls + 1
      if calls == 1 then error("uploader exploded", 0) end
      return upload(...)
    end
    local ok, err, results = submit_two(client_for("fal"), "spec/fixtures/png_640x360.png")
    fal.upload = upload
    assert(ok, err)
    assert.same({ "uploader exploded", "task" }, results)
    assert.equal(2, calls)
    assert.equal(1, #emu:requests{ method = "POST", path = "/fal-ai/vidu/q1/image-to-video" })
  end)

  it("streams a local file to 20 concurrent inline vidu submits and keeps no encoded copy", function()
    -- Local files that go inline are streamed by the engine (images.STREAM_FROM): each body
    -- encodes the file as it is sent, so the cache holds no data: URI for them.
    local path = tmpdir .. "/photo.png"
    local first = util.read_file("spec/fixtures/png_640x360.png")
    util.write_file(path, first)
    local client = client_for("vidu")
    local tasks, errs = submit_many(client, N, { image = path, upload = false })
    assert.same({}, errs)
    assert.equal(N, #tasks)
    local s = images.cache_stats(client)
    assert.same({ reads = 0, hits = 0, uploads = 0, streams = N, fallbacks = 0, kept = 0 }, s)
    local json = require("vidu.json")
    local core = require("vidu.core")
    local bodies = emu:requests{ method = "POST", path = "/ent/v2/img2video" }
    assert.equal(N, #bodies)
    for _, r in ipairs(bodies) do
      local mime, bytes = core.parse_data_uri(json.decode(r.body).images[1])
      assert.equal("image/png", mime)
      assert.is_true(bytes == first, "a body's image differs from the file")
    end
    -- A changed file (another size) is checked again and sent as it is now.
    local second = util.read_file("spec/fixtures/png_33x17.png")
    util.write_file(path, second)
    assert(client:submit{ image = path, prompt = "changed", upload = false })
    bodies = emu:requests{ method = "POST", path = "/ent/v2/img2video" }
    local _, bytes = core.parse_data_uri(json.decode(bodies[#bodies].body).images[1])
    assert.is_true(bytes == second, "the changed file was not sent")
    assert.equal(0, images.cache_stats(client).reads)
  end)

  it("streams { data = ... } inputs from their string: no data: URI is made or kept", function()
    -- The engine sends the bytes base64 encoded from the string itself (a data part), as it
    -- does a file: neither a data: URI nor a body holding it becomes a Lua string.
    local bytes = util.read_file("spec/fixtures/jpeg_640x360.jpg")
    local client = client_for("vidu")
    local _, errs = submit_many(client, 5, { image = { data = bytes .. "" }, upload = false })
    assert.same({}, errs)
    assert(client:submit{ image = { data = bytes:sub(1, -2) .. bytes:sub(-1) }, prompt = "copy", upload = false })
    assert.same({ reads = 0, hits = 0, uploads = 0, streams = 6, fallbacks = 0, kept = 0 },
      images.cache_stats(client))
    local json = require("vidu.json")
    local core = require("vidu.core")
    local bodies = emu:requests{ method = "POST", path = "/ent/v2/img2video" }
    assert.equal(6, #bodies)
    for _, r in ipairs(bodies) do
      local mime, got = core.parse_data_uri(json.decode(r.body).images[1])
      assert.equal("image/jpeg", mime)
      assert.is_true(got == bytes, "a body's image differs from the bytes")
    end
  end)

  -- A local image on the default inline route that a client sends more than once: the first
  -- use inline, one upload, every later use names its URL.
  local SHARED = {
    wavespeed = { submit = "/api/v3/vidu/image-to-video-2.0", upload = "/api/v3/media/uploads",
      image_of = function(b) return b.image end },
    vidu = { submit = "/ent/v2/img2video", upload = "/tools/v2/files/uploads",
      image_of = function(b) return b.images[1] end },
  }
  for _, name in ipairs({ "wavespeed", "vidu" }) do
    local w = SHARED[name]
    for _, source in ipairs({ "path", "bytes" }) do
      it(name .. ": one image (" .. source .. ") in 20 concurrent submits goes inline once, then is uploaded once", function()
        local image = "spec/fixtures/png_640x360.png"
        if source == "bytes" then image = { data = util.read_file(image) } end
        local client = client_for(name)
        local tasks, errs = submit_many(client, N, { image = image })
        assert.same({}, errs)
        assert.equal(N, #tasks)
        assert.equal(1, #emu:requests{ method = "POST", path = w.upload })
        local json = require("vidu.json")
        local inline, urls = 0, {}
        local bodies = emu:requests{ method = "POST", path = w.submit }
        assert.equal(N, #bodies)
        for _, r in ipairs(bodies) do
          local v = w.image_of(json.decode(r.body))
          if v:sub(1, 5) == "data:" then inline = inline + 1 else urls[v] = true end
        end
        assert.equal(1, inline)
        local n = 0
        for _ in pairs(urls) do n = n + 1 end
        assert.equal(1, n)
        assert.same({ reads = 0, hits = N - 2, uploads = 1, streams = 1, fallbacks = 0, kept = 0 },
          images.cache_stats(client))
      end)
    end
  end

  it("a shared image whose upload fails goes inline, for that task and every later one", function()
    emu:fault{ method = "POST", path = "/api/v3/media/uploads", kind = "status", status = 400, times = -1 }
    local client = client_for("wavespeed")
    local tasks, errs = submit_many(client, 5, { image = "spec/fixtures/png_640x360.png" })
    assert.same({}, errs)
    assert.equal(5, #tasks)
    assert(client:submit{ image = "spec/fixtures/png_640x360.png", prompt = "later" })
    -- One upload tried, never again; all six bodies carried the image.
    assert.equal(1, #emu:requests{ method = "POST", path = "/api/v3/media/uploads" })
    assert.same({ reads = 0, hits = 0, uploads = 0, streams = 6, fallbacks = 1, kept = 0 },
      images.cache_stats(client))
    for _, r in ipairs(emu:requests{ method = "POST", path = "/api/v3/vidu/image-to-video-2.0" }) do
      assert.equal("data:image/png;base64,", require("vidu.json").decode(r.body).image:sub(1, 22))
    end
  end)

  it("is per client: the same bytes are uploaded once by each", function()
    local a, b = client_for("fal"), client_for("fal")
    local bytes = util.read_file("spec/fixtures/png_640x360.png")
    for _ = 1, 2 do
      assert(a:submit{ image = { data = bytes }, prompt = "a", upload = true })
      assert(b:submit{ image = { data = bytes }, prompt = "b", upload = true })
    end
    assert.equal(1, images.cache_stats(a).uploads)
    assert.equal(1, images.cache_stats(b).uploads)
    assert.equal(1, images.cache_stats(a).hits)
    assert.equal(2, #emu:requests{ method = "POST", path = "/storage/upload/initiate" })
  end)
end)

describe("a submit's body", function()
  it("is made when its connection slot is granted: N queued submits hold one at a time", function()
    -- One connection, each submit answered after 200 ms: the rest queue for the slot.
    emu:fault{ method = "POST", path = "/ent/v2/img2video", kind = "latency", latency_ms = 200, times = -1 }
    local client = client_for("vidu", { max_connections = 1 })
    local tasks, errs = submit_many(client, 6, { image = "spec/fixtures/png_640x360.png", upload = false })
    assert.same({}, errs)
    assert.equal(6, #tasks)
    local c = client:counters()
    assert.equal(1, c.bodies_peak)
    assert.equal(0, c.bodies)
  end)

  it("is made again for a retry", function()
    emu:fault{ method = "POST", path = "/ent/v2/img2video", kind = "status", status = 503, times = 1 }
    local client = client_for("vidu")
    local t = assert(client:submit{ image = "spec/fixtures/png_640x360.png", prompt = "retry", upload = false })
    assert.truthy(t.id)
    local posts = emu:requests{ method = "POST", path = "/ent/v2/img2video" }
    assert.equal(2, #posts)
    assert.equal(posts[1].body, posts[2].body)
    assert.equal(0, client:counters().bodies)
  end)
end)

describe("submits past their checks", function()
  -- They enter the driver's submit as many at a time as the client has connection slots; the
  -- rest wait at its door in a shallow frame (whose stack a collection can shrink), not deep
  -- inside the request path.
  it("enter the driver at most max_connections at a time, and all go out", function()
    local client = client_for("vidu", { max_connections = 2 })
    local submit, inside, most = client.driver.submit, 0, 0
    client.driver.submit = function(...)
      inside = inside + 1
      if inside > most then most = inside end
      local a, b = submit(...)
      inside = inside - 1
      return a, b
    end
    local ok, tasks, errs = pcall(submit_many, client, 8, { image = "spec/fixtures/png_33x17.png" })
    client.driver.submit = submit
    assert(ok, tasks)
    assert.same({}, errs)
    assert.equal(8, #tasks)
    assert.equal(2, most)
  end)

  it("a driver that raises gives its place back", function()
    local client = client_for("vidu", { max_connections = 1 })
    local submit, calls = client.driver.submit, 0
    client.driver.submit = function(...)
      calls = calls + 1
      if calls == 1 then error("driver exploded", 0) end
      return submit(...)
    end
    local ok, err, results = submit_two(client, "spec/fixtures/png_33x17.png")
    client.driver.submit = submit
    assert(ok, err)
    assert.same({ "driver exploded", "task" }, results)
  end)
end)
