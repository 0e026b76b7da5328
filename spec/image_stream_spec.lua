-- Local images that go inline are streamed (issue 10): the submit's body goes to the engine
-- as parts, the JSON around the image and the file, which the engine base64-encodes as it
-- sends it, so the encoded image never becomes a Lua string. Against the emulator, through
-- every driver that inlines; the emulator's request log shows the bytes it received. No
-- timing is asserted.
-- luacheck: max line length 130
local vidu = require("vidu")
local images = require("vidu.images")
local json = require("vidu.json")
local core = require("vidu.core")
local emulator = require("support.emulator")
local util = require("support.util")

local KEY = "test-key-0123456789"
local IMAGE = "spec/fixtures/png_640x360.png"
-- Characters JSON escapes, a slash (cjson writes "\/") and UTF-8 around the image field.
local PROMPT = 'He said "wave" / then \\ left; ünïcödé\n\ttabs'

-- Per inlining route: the submit path and the parameters that send a local file inline.
local ROUTES = {
  { "fal", "/fal-ai/vidu/q1/image-to-video", { upload = false } },
  { "vidu", "/ent/v2/img2video", { upload = false } },
  { "relay", "/vidu/v2/img2video", {} },
  { "wavespeed", "/api/v3/vidu/image-to-video-2.0", { upload = false } },
  { "vtrix", "/model/v1/generation", {} },
}

local emu, tmpdir

local function client_for(name, opts) return emu:client(name, KEY, opts) end

local function params(extra, image)
  local p = { image = image or IMAGE, prompt = PROMPT }
  for k, v in pairs(extra) do p[k] = v end
  return p
end

-- Runs fn with images.STREAM_FROM set to `from`, restoring it whatever happens.
local function with_stream_from(from, fn)
  local saved = images.STREAM_FROM
  images.STREAM_FROM = from
  local ok, a, b = pcall(fn)
  images.STREAM_FROM = saved
  assert(ok, a)
  return a, b
end

-- A real PNG made `n` bytes long by bytes after its IEND (which readers ignore), varied so
-- the base64 is too.
local function big_png(path, n)
  local png = util.read_file(IMAGE)
  local block = {}
  for i = 0, 65535 do block[#block + 1] = string.char((i * 7919 + math.floor(i / 97)) % 256) end
  block = table.concat(block)
  local f = assert(io.open(path, "wb"))
  f:write(png)
  local left = n - #png
  while left > 0 do
    local k = math.min(left, #block)
    f:write(k == #block and block or block:sub(1, k))
    left = left - k
  end
  f:close()
  return path
end

-- The one logged POST to `path` since the last reset.
local function last_body(path)
  local list = emu:requests{ method = "POST", path = path }
  assert.equal(1, #list)
  return list[1].body
end

emulator.suite{ seed = 5, ready = function(e, d) emu, tmpdir = e, d end }

describe("a streamed inline image", function()
  for _, route in ipairs(ROUTES) do
    local name, path, extra = route[1], route[2], route[3]
    it(name .. ": the server receives the bytes the string body sent, the payload's slashes unescaped", function()
      -- The string body (the path before streaming): STREAM_FROM above any size.
      local old = with_stream_from(math.huge, function()
        assert(client_for(name):submit(params(extra)))
        return last_body(path)
      end)
      emu:reset{ progress = "polls", polls = 2, outcome = "success" }
      local client = client_for(name)
      assert(client:submit(params(extra)))
      local new = last_body(path)
      assert.equal(1, images.cache_stats(client).streams)
      assert.equal(0, images.cache_stats(client).kept)
      -- cjson writes "/" as "\/" (JSON allows both); the engine writes base64 as it is. So
      -- the old body with the payload's "\/" as "/" must be the new body, byte for byte.
      local head = old:find(";base64,", 1, true)
      assert.truthy(head, "the string body holds no data: URI")
      local stop = old:find('"', head, true)
      local payload = old:sub(head + 8, stop - 1)
      local want = old:sub(1, head + 7) .. payload:gsub("\\/", "/") .. old:sub(stop)
      assert.is_true(new == want, "the streamed body differs from the string body:\n" .. new:sub(1, 300))
      assert.same(json.decode(old), json.decode(new))
      -- And the image in it is the file.
      local from = new:find('"data:', 1, true)
      local uri = new:sub(from + 1, new:find('"', from + 1, true) - 1):gsub("\\/", "/")
      local mime, bytes = core.parse_data_uri(uri)
      assert.equal("image/png", mime)
      assert.is_true(bytes == util.read_file(IMAGE))
    end)
  end

  it("keeps the image checks before any request: a file over the inline limit is refused", function()
    local path = big_png(tmpdir .. "/over.png", 14 * 1000 * 1000)
    local client = client_for("vtrix")
    local t, err = client:submit(params({}, path))
    assert.is_nil(t)
    assert.equal("image", err.kind)
    assert.equal("image", err.field)
    assert.matches("too large to send inline", err.message)
    assert.equal(0, #emu:requests{ method = "POST" })
    assert.equal(0, images.cache_stats(client).streams)
  end)

  it("fails as kind io, naming the file, when it changed size between the check and the send", function()
    local path = tmpdir .. "/changing.png"
    util.write_file(path, util.read_file(IMAGE))
    local client = client_for("vidu")
    local t, err = client:submit(params({ upload = false }, path), {
      on_event = function(ev)
        -- Checked already; the body is made later, once the connection slot is granted.
        if ev.type == "submitting" then util.write_file(path, util.read_file("spec/fixtures/png_33x17.png")) end
      end,
    })
    assert.is_nil(t)
    assert.equal("io", err.kind)
    assert.truthy(err.message:find(path, 1, true), err.message)
    assert.matches("when checked", err.message)
    assert.is_falsy(err.may_exist)
    assert.is_false(err.retryable)
    -- Nothing reached the provider: the engine refused before sending.
    assert.equal(0, #emu:requests{ method = "POST", path = "/ent/v2/img2video" })
  end)

  it("never puts the base64 in the journal or in task.raw", function()
    local jpath = tmpdir .. "/stream.journal"
    local j = assert(require("vidu.journal").open(jpath))
    local client = client_for("vidu")
    j:attach(client)
    local t = assert(client:submit(params({ upload = false })))
    assert.truthy(t.id)
    local b64 = core.b64encode(util.read_file(IMAGE))
    -- The emulator's Vidu echoes the images it got in its answer; the task drops them.
    local echoed = json.decode(emu:requests{ method = "POST", path = "/ent/v2/img2video" }[1].body).images[1]
    assert.equal(1, images.cache_stats(client).streams)
    assert.truthy(echoed:find(b64:sub(1, 64), 1, true))
    assert.falsy(json.encode(t.raw):find(b64:sub(1, 64), 1, true))
    local text = util.read_file(jpath)
    assert.truthy(text:find("intent", 1, true))
    assert.falsy(text:find(b64:sub(1, 64), 1, true))
  end)

  it("never holds the encoded image in the Lua heap (a 13.9 MB image inline to vtrix)", function()
    -- vtrix takes the largest inline images (under 14 MB): 18.5 MB of base64 in the body.
    local n = 13900000
    local path = big_png(tmpdir .. "/big.png", n)
    emu:config{ log_body_limit = 20 * 1000 * 1000 } -- the whole body, to compare below
    local client = client_for("vtrix")
    collectgarbage("collect")
    local base = collectgarbage("count")
    local peak, task, err, done = 0, nil, nil, false
    vidu.run(function()
      vidu.spawn(function()
        task, err = client:submit(params({}, path))
        done = true
      end)
      vidu.spawn(function()
        while not done do
          local kb = collectgarbage("count") - base
          if kb > peak then peak = kb end
          vidu.sleep(0.002)
        end
      end)
    end)
    assert(task, tostring(err))
    emu:config{ log_body_limit = 4194304 }
    local got = json.decode(last_body("/model/v1/generation")).input[1].params.images[1]
    assert.equal(#"data:image/png;base64," + 4 * math.ceil(n / 3), #got)
    assert.is_true(got == "data:image/png;base64," .. core.b64encode(util.read_file(path)))
    assert.equal(1, images.cache_stats(client).streams)
    -- The body the emulator logged is 18.5 MB: it was decoded above, after the submit.
    assert.is_true(peak < 2048, ("the Lua heap grew by %.0f KB during the submit"):format(peak))
  end)
end)
