-- Parameter validation, provider by provider: one row per case, the expected field and limit
-- named exactly. Pure: no network (see spec/providers_spec.lua for "no request was sent").
-- luacheck: max line length 130
local validate = require("vidu.validate")

local IMG = "spec/fixtures/png_640x360.png"
local URL = "https://example.com/in.png"
local VIDU_MODELS = "vidu1.5|vidu2.0|viduq1|viduq1-classic|viduq2-pro|viduq2-pro-fast|viduq2-turbo|viduq3-pro|"
  .. "viduq3-pro-fast|viduq3-turbo"

local function base(provider, extra)
  local p = { image = URL, prompt = "The astronaut waved and the camera moved up." }
  if provider == "vidu" or provider == "relay" or provider == "vtrix" then p.prompt = nil end
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

describe("validate.check", function()
  -- { provider, params (merged over a valid base), field, limit, message (plain substring) }
  local bad = {
    { "fal", { prompt = ("x"):rep(1501) }, "prompt", 1500, "prompt: 1501 characters, the limit is 1500" },
    { "vidu", { prompt = ("x"):rep(1501) }, "prompt", 1500, "prompt: 1501 characters, the limit is 1500" },
    { "relay", { prompt = ("x"):rep(1501) }, "prompt", 1500, "1501 characters" },
    { "relay", { model = "viduq2-pro", prompt = ("x"):rep(2001) }, "prompt", 2000, "2001 characters" },
    { "wavespeed", { prompt = ("x"):rep(1501) }, "prompt", 1500, "1501 characters" },
    { "vtrix", { prompt = ("x"):rep(2001) }, "prompt", 2000, "prompt: 2001 characters, the limit is 2000" },
    -- characters, not bytes: 1501 two-byte characters
    { "vidu", { prompt = ("\195\169"):rep(1501) }, "prompt", 1500, "1501 characters" },
    { "vidu", { prompt = "caf\195" }, "prompt", "UTF-8", "not valid UTF-8 (bad byte at offset 4)" },
    { "fal", { prompt = "\237\160\128" }, "prompt", "UTF-8", "not valid UTF-8" }, -- a surrogate
    { "fal", { prompt = "" }, "prompt", "required", "prompt: empty, it is required" },
    { "wavespeed", { prompt = "" }, "prompt", "required", "empty, it is required" },
    { "fal", { movement_amplitude = "huge" }, "movement_amplitude", "auto|small|medium|large",
      'movement_amplitude: "huge" is not one of auto, small, medium, large' },
    { "vtrix", { movement_amplitude = "Auto" }, "movement_amplitude", "auto|small|medium|large", "not one of" },
    { "fal", { seed = -1 }, "seed", "0..2147483647", "seed: -1 is out of range, the limit is 0..2147483647" },
    { "vidu", { seed = 2147483648 }, "seed", "0..2147483647", "2147483648 is out of range" },
    { "relay", { seed = 1.5 }, "seed", "integer", "seed: 1.5 is not a whole number" },
    { "vtrix", { seed = 0 / 0 }, "seed", "integer", "not a whole number" },
    { "wavespeed", { seed = -2 }, "seed", "-1..2147483647", "-2 is out of range, the limit is -1..2147483647" },
    { "vidu", { duration = 4 }, "duration", "5", "duration: 4 s is not available for viduq1, allowed: 5" },
    { "vidu", { model = "vidu2.0", duration = 5 }, "duration", "4|8", "5 s is not available for vidu2.0" },
    { "vidu", { model = "vidu1.5", duration = 16 }, "duration", "4|8", "not available for vidu1.5" },
    { "relay", { model = "viduq2-turbo", duration = 0 }, "duration", "1..10", "the limit is 1..10" },
    { "relay", { model = "viduq1-classic", duration = 8 }, "duration", "5", "viduq1-classic" },
    { "vtrix", { duration = 8 }, "duration", "5", "8 s is not available for viduq1_img2video" },
    { "wavespeed", { duration = 5 }, "duration", "4|8", "5 s is not available" },
    { "vidu", { resolution = "720p" }, "resolution", "1080p",
      'resolution: "720p" is not available for viduq1 at 5 s, allowed: 1080p' },
    { "vidu", { model = "vidu2.0", resolution = "540p" }, "resolution", "360p|720p|1080p", "at 4 s" },
    { "vidu", { model = "vidu2.0", duration = 8, resolution = "1080p" }, "resolution", "720p", "at 8 s, allowed: 720p" },
    { "relay", { model = "vidu1.5", duration = 8, resolution = "360p" }, "resolution", "720p", "at 8 s" },
    { "relay", { model = "viduq2-pro", resolution = "360p" }, "resolution", "540p|720p|1080p", "viduq2-pro" },
    { "vtrix", { resolution = "720p" }, "resolution", "1080p", "viduq1_img2video" },
    { "vidu", { model = "viduq9-pro" }, "model", VIDU_MODELS, 'model: "viduq9-pro" is not one of' },
    { "relay", { model = "vidu3" }, "model", VIDU_MODELS, "not one of" },
    -- Q2 and Q3 (the current models): durations, resolutions and prompt limits per model
    { "vidu", { model = "viduq2-pro", duration = 11 }, "duration", "1..10", "the limit is 1..10" },
    { "vidu", { model = "viduq3-turbo", duration = 17 }, "duration", "1..16", "17 s is not available for viduq3-turbo" },
    { "vidu", { model = "viduq2-pro-fast", resolution = "540p" }, "resolution", "720p|1080p", "viduq2-pro-fast" },
    { "vidu", { model = "viduq3-pro-fast", resolution = "540p" }, "resolution", "720p|1080p", "viduq3-pro-fast" },
    { "vidu", { model = "viduq2-turbo", prompt = ("x"):rep(2001) }, "prompt", 2000, "2001 characters" },
    { "vidu", { model = "viduq3-pro", prompt = ("x"):rep(5001) }, "prompt", 5000, "5001 characters, the limit is 5000" },
    { "relay", { model = "viduq3-pro", duration = 0 }, "duration", "1..16", "the limit is 1..16" },
    { "vtrix", { model = "viduq1" }, "model", "viduq1_img2video", "not one of" },
    { "wavespeed", { model = "vidu/image-to-video-1.0" }, "model", "vidu/image-to-video-2.0", "not one of" },
    { "fal", { model = "vidu q1" }, "model", "owner/app[/path]", "is not a fal model id" },
    { "fal", { model = "fal-ai" }, "model", "owner/app[/path]", "is not a fal model id" },
    { "fal", { model = "fal-ai/vidu/" }, "model", "owner/app[/path]", "is not a fal model id" },
    { "vidu", { payload = ("p"):rep(1048577) }, "payload", 1048576,
      "payload: 1048577 characters, the limit is 1048576" },
    { "vtrix", { payload = ("\226\130\172"):rep(1048577) }, "payload", 1048576, "1048577 characters" },
    { "relay", { payload = "\255" }, "payload", "UTF-8", "not valid UTF-8" },
    { "vidu", { wm_position = 0 }, "wm_position", "1..4", "wm_position: 0 is out of range, the limit is 1..4" },
    { "vtrix", { wm_position = 5 }, "wm_position", "1..4", "5 is out of range" },
    { "relay", { wm_position = 2.5 }, "wm_position", "integer", "not a whole number" },
    { "vidu", { callback_url = "ftp://example.com/cb" }, "callback_url", "http(s) URL",
      'callback_url: "ftp://example.com/cb" is not an http(s) URL' },
    { "vtrix", { callback_url = "example.com/cb" }, "callback_url", "http(s) URL", "not an http(s) URL" },
    { "relay", { callback_url = "https://exa mple.com/" }, "callback_url", "http(s) URL", "not an http(s) URL" },
    { "vidu", { wm_url = "logo.png" }, "wm_url", "http(s) URL", "not an http(s) URL" },
    { "fal", { fal_webhook = "https://" }, "fal_webhook", "http(s) URL", "not an http(s) URL" },
    { "wavespeed", { webhook = "javascript:alert(1)" }, "webhook", "http(s) URL", "not an http(s) URL" },
    { "fal", { priority = "high" }, "priority", "normal|low", 'priority: "high" is not one of normal, low' },
    { "fal", { start_timeout = 1 }, "start_timeout", "> 1", "must be above 1" },
    { "fal", { start_timeout = 0.1 }, "start_timeout", "> 1", "0.1 is too small" },
    { "fal", { hint = "" }, "hint", "non-empty", "hint: empty" },
    { "vidu", { voice_id = ("v"):rep(257) }, "voice_id", 256, "257 characters" },
    { "relay", { meta_data = "\192\128" }, "meta_data", "UTF-8", "not valid UTF-8" },
  }

  for i, row in ipairs(bad) do
    local provider, extra, field, limit, message = row[1], row[2], row[3], row[4], row[5]
    do
      it(string.format("%s #%d: %s -> invalid %s (limit %s)", provider, i, field, field,
        tostring(limit)), function()
        local p, err = validate.check(provider, base(provider, extra))
        assert.is_nil(p)
        assert.equal("invalid", err.kind)
        assert.equal(provider, err.provider)
        assert.equal(field, err.field)
        assert.equal(limit, err.limit)
        assert.truthy(err.message:find(message, 1, true),
          "message " .. err.message .. " lacks " .. message)
      end)
    end
  end

  it("reports a missing image and a missing required prompt with limit 'required'", function()
    for _, provider in ipairs({ "fal", "vidu", "relay", "vtrix", "wavespeed" }) do
      local _, err = validate.check(provider, { prompt = "x" })
      assert.equal("image", err.field)
      assert.equal("required", err.limit)
      assert.equal("image: missing, it is required", err.message)
    end
    for _, provider in ipairs({ "fal", "wavespeed" }) do
      local _, err = validate.check(provider, { image = URL })
      assert.equal("prompt", err.field)
      assert.equal("required", err.limit)
    end
    -- Vidu, the relay and Vtrix make the prompt optional (is_rec, or image-only motion).
    for _, provider in ipairs({ "vidu", "relay", "vtrix" }) do
      assert.is_table((validate.check(provider, { image = URL })))
    end
  end)

  -- Values right at the limits pass.
  local good = {
    { "fal", { prompt = ("x"):rep(1500), seed = 0, movement_amplitude = "large" } },
    { "fal", { seed = 2147483647, model = "fal-ai/vidu/image-to-video", priority = "low",
      start_timeout = 1.5, hint = "runner-1", fal_webhook = "https://example.com/hook?a=1" } },
    { "vidu", { prompt = ("\195\169"):rep(1500), model = "vidu2.0", duration = 8, resolution = "720p" } },
    { "vidu", { model = "vidu1.5", resolution = "1080p" } }, -- default duration 4 s
    { "vidu", { model = "viduq1", duration = 5, resolution = "1080p", bgm = true, off_peak = false,
      payload = ("p"):rep(1048576), callback_url = "http://127.0.0.1:9/cb", is_rec = false,
      audio = true, voice_id = "v1", watermark = true, wm_position = 4,
      wm_url = "https://example.com/wm.png", meta_data = { Label = "x" } } },
    { "relay", { model = "viduq2-pro", duration = 10, resolution = "540p", prompt = ("x"):rep(2000),
      meta_data = '{"Label":"x"}', wm_position = 1 } },
    { "relay", { model = "viduq2-turbo", duration = 1 } },
    { "vidu", { model = "viduq3-pro", duration = 16, resolution = "540p", prompt = ("x"):rep(5000) } },
    { "vidu", { model = "viduq3-pro-fast", duration = 1, resolution = "1080p" } },
    { "vidu", { model = "viduq2-pro-fast", duration = 10, resolution = "720p", prompt = ("x"):rep(2000) } },
    { "vidu", { model = "viduq1-classic", duration = 5, resolution = "1080p" } },
    { "vidu", { model = "vidu1.5", duration = 8, resolution = "720p" } },
    { "vtrix", { prompt = ("x"):rep(2000), duration = 5, resolution = "1080p", seed = 0,
      audio = false, wm_position = 3 } },
    { "wavespeed", { seed = -1, duration = 8, sync = true, webhook = "https://example.com/w" } },
  }
  for i, row in ipairs(good) do
    it(string.format("%s good #%d passes", row[1], i), function()
      local p, err = validate.check(row[1], base(row[1], row[2]))
      assert.is_nil(err)
      assert.is_table(p)
      assert.equal("url", p.image.route)
    end)
  end

  it("fills in each provider's default model", function()
    local defaults = {
      fal = "fal-ai/vidu/q1/image-to-video", vidu = "viduq1", relay = "viduq1",
      vtrix = "viduq1_img2video", wavespeed = "vidu/image-to-video-2.0",
    }
    for provider, model in pairs(defaults) do
      local p = assert(validate.check(provider, base(provider)))
      assert.equal(model, p.model)
    end
  end)

  it("keeps whole numbers as integers and does not change the caller's table", function()
    local params = base("vidu", { seed = 42.0, duration = 5.0 })
    local p = assert(validate.check("vidu", params))
    assert.equal("42", string.format("%d", p.seed))
    assert.equal(URL, params.image)
    assert.equal(42, params.seed)
  end)

  it("checks the local image as part of validation", function()
    local p = assert(validate.check("vidu", base("vidu", { image = IMG })))
    assert.equal("file", p.image.source)
    assert.equal("inline", p.image.route)
    assert.equal(640, p.image.width)
    local _, err = validate.check("vidu", base("vidu", { image = "spec/fixtures/png_100x400.png" }))
    assert.equal("image", err.kind)
    assert.equal("1:4..4:1", err.limit)
  end)

  it("reports the first bad field in a stable order (model, prompt, ... image last)", function()
    local _, err = validate.check("vidu", { image = "/nonexistent.png", prompt = ("x"):rep(1501),
      seed = -5, model = "nope" })
    assert.equal("model", err.field)
    _, err = validate.check("vidu", { image = "/nonexistent.png", prompt = ("x"):rep(1501), seed = -5 })
    assert.equal("prompt", err.field)
    _, err = validate.check("vidu", { image = "/nonexistent.png", seed = -5 })
    assert.equal("seed", err.field)
  end)

  -- Programmer mistakes raise: { provider, params, pattern in the message }.
  local raises = {
    { "fal", { image = URL, prompt = "x", promt = "typo" }, "unknown option 'promt'" },
    { "vidu", { image = URL, resolution = 1080 }, "option 'resolution' must be a string, got number" },
    { "vidu", { image = URL, seed = "42" }, "option 'seed' must be an integer, got string" },
    { "vtrix", { image = URL, bgm = "yes" }, "option 'bgm' must be a boolean, got string" },
    { "fal", { image = URL, prompt = false }, "option 'prompt' must be a string, got boolean" },
    { "fal", { image = URL, prompt = "x", start_timeout = "5" }, "option 'start_timeout' must be a number" },
    { "wavespeed", { image = URL, prompt = "x", sync = 1 }, "option 'sync' must be a boolean" },
    { "relay", { image = URL, audio = true }, "unknown option 'audio'" },      -- not on the relay
    { "wavespeed", { image = URL, prompt = "x", resolution = "720p" }, "unknown option 'resolution'" },
    { "fal", { image = URL, prompt = "x", duration = 5 }, "unknown option 'duration'" },
    { "vtrix", { image = URL, meta_data = "x" }, "unknown option 'meta_data'" },
    { "vidu", { image = 42 }, "option 'image' must be a path, an http(s) URL, a data: URI" },
    { "vidu", { image = false }, "option 'image' must be" },
    { "vidu", { image = { bytes = "x" } }, "takes only 'data' and 'name'" },
    { "vidu", { image = { data = 1 } }, "option 'image.data' must be a string" },
    { "vidu", { image = { name = "x.png" } }, "needs 'data'" },
    { "vidu", { image = URL, [1] = "positional" }, "unknown option '1'" },
    { "fal", { image = URL, prompt = "x", hint = "a\r\nX-Evil: 1" }, "option 'hint' must not contain control characters" },
    { "fal", { image = "spec/fixtures/png_640x360.png", prompt = "x", hint = "a\n" }, "sent as an HTTP header" },
  }
  for i, row in ipairs(raises) do
    it(string.format("%s raise #%d: %s", row[1], i, row[3]), function()
      local ok, msg = pcall(validate.check, row[1], row[2])
      assert.is_false(ok)
      assert.truthy(tostring(msg):find(row[3], 1, true), "message " .. tostring(msg))
    end)
  end

  it("raises for a params value that is not a table and an unknown provider", function()
    assert.has_error(function() validate.check("vidu", "prompt") end)
    assert.has_error(function() validate.check("sora", {}) end)
  end)
end)

describe("url.is_url", function()
  local rows = {
    { "https://example.com", true }, { "http://127.0.0.1:8080/x?y=1", true },
    { "HTTPS://EXAMPLE.COM/", true }, { "ftp://example.com", false }, { "https://", false },
    { "https:///path", false }, { "//example.com", false }, { "https://a b", false },
    { "https://a\nb", false }, { 42, false },
  }
  for _, row in ipairs(rows) do
    it(tostring(row[1]) .. " -> " .. tostring(row[2]), function()
      assert.equal(row[2], require("vidu.url").is_url(row[1]))
    end)
  end
end)
