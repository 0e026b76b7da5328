-- The five providers against the emulator, end to end: the same scenarios for each (one table
-- row per provider), then what is particular to each. Nothing here asserts a timing: waits
-- are bounded by a timeout and the emulator's request log tells what was sent.
-- luacheck: max line length 130
local vidu = require("vidu")
local emulator = require("support.emulator")
local util = require("support.util")
local read = util.read_file_if_exists

local PROMPT = "The astronaut waved and the camera moved up."
local IMAGE = "spec/fixtures/png_640x360.png"
local KEY = "test-key-0123456789"

-- Per provider: the submit path, a pattern for the poll path, whether it can cancel.
local P = {
  fal = { submit = "/fal-ai/vidu/q1/image-to-video", poll = "^/fal%-ai/vidu/requests/[^/]+/status$", cancel = true },
  -- Vidu's polls: a task's creations, or the task list that batches them (GET /ent/v2/tasks).
  vidu = { submit = "/ent/v2/img2video", poll = "^/ent/v2/tasks", cancel = true },
  relay = { submit = "/vidu/v2/img2video", poll = "^/vidu/v2/tasks/[^/]+/creations$", cancel = false },
  wavespeed = { submit = "/api/v3/vidu/image-to-video-2.0", poll = "^/api/v3/predictions/[^/]+/result$", cancel = false },
  vtrix = { submit = "/model/v1/generation", poll = "^/model/v1/generation/task/[^/]+$", cancel = false },
}
local NAMES = { "fal", "vidu", "relay", "wavespeed", "vtrix" }

local emu
local tmpdir

local function client_for(name, opts) return emu:client(name, KEY, opts) end

local function params(extra)
  local p = { image = IMAGE, prompt = PROMPT }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

local function is_mp4(path)
  local s = read(path)
  return s ~= nil and #s > 12 and s:sub(5, 8) == "ftyp"
end

local function requests(filter)
  return emu:requests(filter or {})
end

local function count(filter)
  return #requests(filter)
end

local function header(entry, name)
  return entry.headers and entry.headers[name]
end

emulator.suite{ seed = 7, ready = function(e, d) emu, tmpdir = e, d end }

for _, name in ipairs(NAMES) do
  local cfg = P[name]
  describe(name, function()
    it("goes from an image to a downloaded MP4", function()
      local client = client_for(name)
      local task, err = client:submit(params())
      assert.is_nil(err)
      assert.equal(name, task.provider)
      assert.is_string(task.id)
      local updates = 0
      local ok, werr = task:wait{ timeout = 30, on_update = function() updates = updates + 1 end }
      assert.is_nil(werr)
      assert.is_true(ok)
      assert.equal("succeeded", task.status)
      assert.truthy(task.video_url:match("^https?://"))
      assert.truthy(updates >= 1)
      local out = tmpdir .. "/" .. name .. ".mp4"
      assert.is_true((task:download(out)))
      assert.is_true(is_mp4(out))
      assert.equal(1, count{ method = "POST", path = cfg.submit })
    end)

    -- Validation failures: nothing may reach the provider. { params, field }
    local invalid = {
      { { prompt = ("x"):rep(name == "vtrix" and 2001 or 1501) }, "prompt" },
      { { seed = -7 }, "seed" },
      { { movement_amplitude = "wild" }, "movement_amplitude" },
      { { model = "no-such-model" }, "model" },
      { { image = "spec/fixtures/png_100x400.png" }, "image" },
      { { image = "/nonexistent/image.png" }, "image" },
    }
    for i, row in ipairs(invalid) do
      it("sends nothing when " .. row[2] .. " is bad (#" .. i .. ")", function()
        local client = client_for(name)
        local task, err = client:submit(params(row[1]))
        assert.is_nil(task)
        assert.equal(row[2], err.field)
        assert.truthy(err.kind == "invalid" or err.kind == "image")
        assert.equal(0, count())
      end)
    end

    it("raises for an unknown option and sends nothing", function()
      local client = client_for(name)
      assert.has_error(function() client:submit(params{ promptt = "x" }) end)
      assert.equal(0, count())
    end)

    it("reports a refused key as auth (401) without the key in the message", function()
      emu:reset{ progress = "polls", polls = 2, keys = { [name] = { "the-right-key" } } }
      local client = client_for(name, { api_key = "wrong-key-abcdef" })
      local task, err = client:submit(params{ image = "https://example.com/in.png" })
      assert.is_nil(task)
      assert.equal("auth", err.kind)
      assert.equal(401, err.status)
      assert.falsy(tostring(err):find("wrong-key-abcdef", 1, true))
      assert.equal(1, count{ method = "POST", path = cfg.submit })
    end)

    it("honours Retry-After on a 429 submit, then succeeds", function()
      emu:fault{ method = "POST", path = cfg.submit, kind = "status", status = 429, retry_after = "1", times = 1 }
      local client = client_for(name)
      local task, err = client:submit(params())
      assert.is_nil(err)
      assert.truthy(task.id)
      local posts = requests{ method = "POST", path = cfg.submit }
      assert.equal(2, #posts)
      -- Never earlier than the server asked (a lower bound, not a timing measurement).
      assert.truthy(posts[2].time - posts[1].time >= 0.9)
    end)

    it("rides out a 503 on a poll", function()
      emu:fault{ method = "GET", match = cfg.poll, kind = "status", status = 503, times = 1 }
      -- fal follows its status stream by default (stream_spec); this is about the polls.
      local client = client_for(name, name == "fal" and { stream = false } or nil)
      local task = assert(client:submit(params()))
      local ok, err = task:wait{ timeout = 30 }
      assert.is_nil(err)
      assert.is_true(ok)
      local polls = requests{ method = "GET", match = cfg.poll }
      assert.equal(503, polls[1].status)
      assert.truthy(#polls >= 2)
    end)

    it("does not re-send a submit reset after it was sent, and says the task may exist", function()
      -- Its own scheduler, so its own engine: the submit goes out on a fresh connection.
      local client = client_for(name, { scheduler = require("vidu.scheduler").new() })
      emu:fault{ method = "POST", path = cfg.submit, kind = "reset_after", times = 1 }
      local task, err = client:submit(params{ image = "https://example.com/in.png" })
      assert.is_nil(task)
      assert.equal("uncertain", err.kind)
      assert.is_true(err.may_exist)
      assert.truthy(err.message:find("may exist", 1, true))
      assert.equal(1, count{ method = "POST", path = cfg.submit })
    end)

    it("does not re-send a submit reset on a reused keep-alive connection either", function()
      local client = client_for(name)
      -- Warm up: leaves a kept-alive connection to the emulator in the engine's pool.
      assert(client:submit(params{ image = "https://example.com/in.png" }))
      emu:reset{ progress = "polls", polls = 2 }
      emu:fault{ method = "POST", path = cfg.submit, kind = "reset_after", times = 1 }
      local task, err = client:submit(params{ image = "https://example.com/in.png" })
      -- libcurl itself silently retries a request whose reused connection dies before any
      -- answer byte ("Connection died, retrying a fresh connect"), POST included: a second
      -- paid task. Submits need a fresh connection (CURLOPT_FRESH_CONNECT) to be safe.
      assert.equal(1, count{ method = "POST", path = cfg.submit },
        "the submit was sent twice: libcurl re-sent it on a fresh connection")
      assert.is_nil(task)
      assert.equal("uncertain", err.kind)
    end)

    it("re-sends a submit refused before the connection carried it (503)", function()
      emu:fault{ method = "POST", path = cfg.submit, kind = "status", status = 503, times = 1 }
      local client = client_for(name)
      assert.truthy(client:submit(params()))
      assert.equal(2, count{ method = "POST", path = cfg.submit })
    end)

    -- { the emulator's outcome, the error kind wait returns }; the task's status is "failed"
    for _, case in ipairs({ { "failed", "failed" }, { "moderated", "moderated" } }) do
      it("reports a " .. case[1] .. " generation as " .. case[2] .. ", with the task id", function()
        emu:next{ outcome = case[1] }
        local client = client_for(name)
        local task = assert(client:submit(params()))
        local ok, err = task:wait{ timeout = 30 }
        assert.is_nil(ok)
        assert.equal(case[2], err.kind)
        assert.equal(task.id, err.task_id)
        assert.equal("failed", task.status)
      end)
    end

    if cfg.cancel then
      it("cancels a queued task", function()
        emu:next{ polls = 1000 }
        local client = client_for(name)
        local task = assert(client:submit(params()))
        local ok, err = task:cancel()
        assert.is_nil(err)
        assert.is_true(ok)
        local _, werr = task:wait{ timeout = 10 }
        assert.equal("canceled", werr.kind)
        assert.equal("canceled", task.status)
      end)

      it("cancels on timeout when asked", function()
        emu:next{ polls = 1000 }
        local client = client_for(name)
        local task = assert(client:submit(params()))
        local ok, err = task:wait{ timeout = 0.3, cancel_on_timeout = true }
        assert.is_nil(ok)
        assert.equal("timeout", err.kind)
        assert.truthy(err.message:find("it was canceled", 1, true), err.message)
        assert.truthy(#requests{ match = "cancel" } >= 1)
      end)
    else
      it("says it cannot cancel, sending nothing", function()
        local client = client_for(name)
        local task = assert(client:submit(params()))
        local before = count()
        local ok, err = task:cancel()
        assert.is_nil(ok)
        assert.equal("unsupported", err.kind)
        assert.equal(before, count())
      end)

      it("times out (no cancel possible) and can be waited again", function()
        emu:next{ polls = 40 }
        local client = client_for(name)
        local task = assert(client:submit(params()))
        local ok, err = task:wait{ timeout = 0.2, cancel_on_timeout = true }
        assert.is_nil(ok)
        assert.equal("timeout", err.kind)
        assert.equal(task.id, err.task_id)
      end)
    end

    it("re-attaches to a task by id", function()
      local client = client_for(name)
      local task = assert(client:submit(params()))
      local again = assert(client_for(name):task(task.id))
      assert.equal(task.id, again.id)
      assert.is_true((again:wait{ timeout = 30 }))
      assert.equal(task.video_url and task.video_url:match("^[^?]+") or again.video_url:match("^[^?]+"),
        again.video_url:match("^[^?]+"))
    end)

    it("runs 100 tasks at once in one vidu.run", function()
      emu:reset{ progress = "polls", polls = 2, outcome = "success", log_limit = 100000 }
      local client = client_for(name)
      local results
      vidu.run(function()
        local jobs = {}
        for i = 1, 100 do
          jobs[i] = function()
            local task = assert(client:submit(params{ image = "https://example.com/in.png", seed = i }))
            assert(task:wait{ timeout = 60 })
            return task.video_url
          end
        end
        results = vidu.gather(jobs)
      end)
      assert.equal(100, #results)
      for i = 1, 100 do
        assert.is_true(results[i].ok, tostring(results[i].err))
      end
      assert.equal(100, count{ method = "POST", path = cfg.submit })
    end)
  end)
end

describe("fal specifics", function()
  it("uploads a local image to fal storage by default, without the key on the PUT", function()
    local client = client_for("fal")
    local task = assert(client:submit(params()))
    local init = requests{ method = "POST", path = "/storage/upload/initiate" }
    assert.equal(1, #init)
    assert.equal("Key " .. KEY, header(init[1], "authorization"))
    local puts = requests{ method = "PUT" }
    assert.equal(1, #puts)
    assert.is_nil(header(puts[1], "authorization"))
    assert.equal("image/png", header(puts[1], "content-type"))
    local sub = requests{ method = "POST", path = P.fal.submit }[1]
    local body = require("vidu.json").decode(sub.body)
    assert.truthy(body.image_url:match("^http"))
    assert.is_true((task:wait{ timeout = 30 }))
  end)

  it("sends the image inline with upload = false", function()
    local client = client_for("fal")
    assert(client:submit(params{ upload = false }))
    assert.equal(0, count{ path = "/storage/upload/initiate" })
    local body = require("vidu.json").decode(requests{ method = "POST", path = P.fal.submit }[1].body)
    assert.equal("data:image/png;base64,", body.image_url:sub(1, 22))
  end)

  it("polls the status_url of the submit answer (owner/app only) with logs=1, then the result", function()
    local client = client_for("fal", { stream = false })
    local task = assert(client:submit(params{ image = "https://example.com/in.png" }))
    assert.truthy(task.status_url:find("/fal-ai/vidu/requests/", 1, true))
    assert.falsy(task.status_url:find("q1", 1, true))
    assert.is_true((task:wait{ timeout = 30 }))
    local polls = requests{ method = "GET", match = "/requests/[^/]+/status$" }
    assert.truthy(#polls >= 1)
    for _, p in ipairs(polls) do
      assert.equal("/fal-ai/vidu/requests/" .. task.id .. "/status", p.path)
      assert.truthy((p.query or ""):find("logs=1", 1, true))
    end
    assert.equal(1, count{ method = "GET", path = "/fal-ai/vidu/requests/" .. task.id })
  end)

  it("passes priority, start timeout, runner hint and webhook", function()
    local client = client_for("fal")
    assert(client:submit(params{ image = "https://example.com/in.png", priority = "low",
      start_timeout = 30, hint = "runner-7", fal_webhook = "http://127.0.0.1:9/hook?x=1" }))
    local sub = requests{ method = "POST", path = P.fal.submit }[1]
    assert.equal("low", header(sub, "x-fal-queue-priority"))
    assert.equal("30", header(sub, "x-fal-request-timeout"))
    assert.equal("runner-7", header(sub, "x-fal-runner-hint"))
    assert.truthy((sub.query or ""):find("fal_webhook=http%3A%2F%2F127.0.0.1%3A9%2Fhook%3Fx%3D1", 1, true))
  end)

  it("reports queue position and logs through on_update", function()
    emu:next{ polls = 4 }
    local client = client_for("fal")
    local task = assert(client:submit(params{ image = "https://example.com/in.png" }))
    local saw_position, saw_logs = false, false
    assert.is_true((task:wait{ timeout = 30, on_update = function(t)
      if type(t.queue_position) == "number" then saw_position = true end
      if type(t.logs) == "table" and #t.logs > 0 then saw_logs = true end
    end }))
    assert.is_true(saw_position or saw_logs)
  end)

  it("re-attaches with another model's owner/app", function()
    local client = client_for("fal")
    local fields = assert(client:task("abc-123",
      { model = "fal-ai/kling-video/v1/standard/image-to-video", poll = false }))
    assert.equal(emu.url .. "/fal-ai/kling-video/requests/abc-123/status", fields.status_url)
    assert.equal(emu.url .. "/fal-ai/kling-video/requests/abc-123", fields.response_url)
    assert.equal(emu.url .. "/fal-ai/kling-video/requests/abc-123/cancel", fields.cancel_url)
    fields = assert(client:task("r1", { model = "workflows/me/my-flow", poll = false }))
    assert.equal(emu.url .. "/workflows/me/my-flow/requests/r1/status", fields.status_url)
    assert.has_error(function() client:task("r1", { modle = "fal-ai/x" }) end)
    assert.has_error(function() client_for("vidu"):task("1", { model = "viduq1" }) end)
    assert.equal(0, count())
  end)

  it("reads fal's 422 detail list into the error", function()
    emu:fault{ method = "POST", path = P.fal.submit, kind = "status", status = 422,
      body = '{"detail":[{"loc":["body","prompt"],"msg":"String too long","type":"string_too_long"}]}' }
    local task, err = client_for("fal"):submit(params{ image = "https://example.com/in.png" })
    assert.is_nil(task)
    assert.equal("http", err.kind)
    assert.equal(422, err.status)
    assert.equal("string_too_long", err.code)
    assert.truthy(err.message:find("body.prompt: String too long", 1, true), err.message)
    assert.equal(1, count{ method = "POST", path = P.fal.submit })
  end)

  it("reports a refused cancel of a finished request", function()
    local client = client_for("fal")
    local task = assert(client:submit(params{ image = "https://example.com/in.png" }))
    assert.is_true((task:wait{ timeout = 30 }))
    local ok, err = task:cancel()
    assert.is_nil(ok)
    assert.equal(400, err.status)
    assert.equal(task.id, err.task_id)
    assert.equal("succeeded", task.status)
  end)
end)

describe("vidu specifics", function()
  it("sends Token auth, the documented body, and reads credits into cost", function()
    local client = client_for("vidu")
    local task = assert(client:submit(params{ model = "vidu2.0", duration = 8, resolution = "720p", seed = 42,
      bgm = true, payload = "mine" }))
    local sub = requests{ method = "POST", path = "/ent/v2/img2video" }[1]
    assert.equal("Token " .. KEY, header(sub, "authorization"))
    local body = require("vidu.json").decode(sub.body)
    assert.equal("vidu2.0", body.model)
    assert.equal(8, body.duration)
    assert.equal("720p", body.resolution)
    assert.equal(42, body.seed)
    assert.is_true(body.bgm)
    assert.equal("mine", body.payload)
    assert.equal(1, #body.images)
    assert.equal("data:image/png;base64,", body.images[1]:sub(1, 22))
    assert.is_number(task.cost)
    assert.is_true((task:wait{ timeout = 30 }))
    assert.truthy(task.cover_url)
  end)

  it("uploads through /tools/v2/files/uploads when asked (create, PUT, finish)", function()
    local client = client_for("vidu")
    local task = assert(client:submit(params{ upload = true }))
    assert.equal(1, count{ method = "POST", path = "/tools/v2/files/uploads" })
    local puts = requests{ method = "PUT", match = "^/media/put/" }
    assert.equal(1, #puts)
    assert.is_nil(header(puts[1], "authorization"))
    assert.equal(1, count{ method = "PUT", match = "^/tools/v2/files/uploads/[^/]+/finish$" })
    local body = require("vidu.json").decode(requests{ method = "POST", path = "/ent/v2/img2video" }[1].body)
    assert.equal("ssupload:?id=", body.images[1]:sub(1, 13))
    assert.is_true((task:wait{ timeout = 30 }))
  end)

  it("cancels with POST /ent/v2/tasks/{id}/cancel and {\"id\": ...}", function()
    emu:next{ polls = 1000 }
    local client = client_for("vidu")
    local task = assert(client:submit(params()))
    assert.is_true((task:cancel()))
    local c = requests{ method = "POST", path = "/ent/v2/tasks/" .. task.id .. "/cancel" }
    assert.equal(1, #c)
    assert.equal(task.id, require("vidu.json").decode(c[1].body).id)
  end)

  it("reports a moderation refusal at submit as moderated", function()
    emu:fault{ method = "POST", path = "/ent/v2/img2video", kind = "status", status = 400,
      body = '{"code":400,"reason":"TaskPromptPolicyViolation","message":"prompt rejected","metadata":{"trace_id":"t1"}}' }
    local task, err = client_for("vidu"):submit(params())
    assert.is_nil(task)
    assert.equal("moderated", err.kind)
    assert.equal(400, err.status)
    assert.equal("TaskPromptPolicyViolation", err.code)
    assert.truthy(err.message:find("prompt rejected", 1, true))
  end)

  it("reports a refused cancel (the task is already processing)", function()
    emu:next{ polls = 1000 }
    local client = client_for("vidu")
    local task = assert(client:submit(params()))
    emu:task(task.id, { state = "running" })
    local ok, err = task:cancel()
    assert.is_nil(ok)
    assert.equal("http", err.kind)
    assert.equal(400, err.status)
    assert.equal("BadRequest", err.code)
    assert.equal(task.id, err.task_id)
  end)

  it("re-attaching to an unknown id reports the 404", function()
    local task, err = client_for("vidu"):task("123456789")
    assert.is_nil(task)
    assert.equal(404, err.status)
  end)
end)

describe("relay specifics", function()
  it("needs a base_url and sends Bearer auth on /vidu/v2", function()
    assert.has_error(function() vidu.client("relay", { api_key = KEY }) end)
    local client = client_for("relay")
    assert(client:submit(params{ model = "viduq2-pro", duration = 5, resolution = "720p" }))
    local sub = requests{ method = "POST", path = "/vidu/v2/img2video" }[1]
    assert.equal("Bearer " .. KEY, header(sub, "authorization"))
  end)

  it("refuses upload = true: the relay has no upload API", function()
    local _, err = client_for("relay"):submit(params{ upload = true })
    assert.equal("image", err.kind)
    assert.equal(0, count())
  end)
end)

describe("wavespeed specifics", function()
  it("sends a flat body with Bearer auth and polls urls.get", function()
    local client = client_for("wavespeed")
    local task = assert(client:submit(params{ seed = -1, duration = 8 }))
    local sub = requests{ method = "POST", path = P.wavespeed.submit }[1]
    assert.equal("Bearer " .. KEY, header(sub, "authorization"))
    local body = require("vidu.json").decode(sub.body)
    assert.equal(PROMPT, body.prompt)
    assert.equal(-1, body.seed)
    assert.equal(8, body.duration)
    assert.equal("data:image/png;base64,", body.image:sub(1, 22))
    assert.is_nil(body.enable_sync_mode)
    assert.is_true((task:wait{ timeout = 30 }))
  end)

  it("in sync mode takes the final answer from the submit itself", function()
    emu:reset{ progress = "polls", polls = 2, seconds = 0.2 }
    local client = client_for("wavespeed")
    local task = assert(client:submit(params{ sync = true }))
    local body = require("vidu.json").decode(requests{ method = "POST", path = P.wavespeed.submit }[1].body)
    assert.is_true(body.enable_sync_mode)
    assert.equal("succeeded", task.status)
    assert.is_true((task:wait{ timeout = 30 }))
    assert.equal(0, count{ method = "GET", match = P.wavespeed.poll })
  end)

  it("in sync mode falls back to polling when the answer is not final", function()
    emu:reset{ progress = "polls", polls = 2, seconds = 3, sync_timeout = 0.2 }
    local client = client_for("wavespeed")
    local task = assert(client:submit(params{ sync = true }))
    assert.is_not.equal("succeeded", task.status)
    assert.is_true((task:wait{ timeout = 30 }))
    assert.truthy(count{ method = "GET", match = P.wavespeed.poll } >= 1)
  end)

  it("uploads through /api/v3/media/uploads when asked", function()
    local client = client_for("wavespeed")
    local task = assert(client:submit(params{ upload = true }))
    assert.equal(1, count{ method = "POST", path = "/api/v3/media/uploads" })
    local puts = requests{ method = "PUT" }
    assert.equal(1, #puts)
    assert.is_nil(header(puts[1], "authorization"))
    local body = require("vidu.json").decode(requests{ method = "POST", path = P.wavespeed.submit }[1].body)
    assert.truthy(body.image:match("^http"))
    assert.is_true((task:wait{ timeout = 30 }))
  end)

  it("reads a refusal inside a 200 envelope as a provider error", function()
    emu:fault{ method = "POST", path = P.wavespeed.submit, kind = "status", status = 200,
      body = '{"code":400,"message":"image is required","data":null}' }
    local task, err = client_for("wavespeed"):submit(params{ image = "https://example.com/in.png" })
    assert.is_nil(task)
    assert.equal("provider", err.kind)
    assert.equal(400, err.code)
    assert.truthy(err.message:find("image is required", 1, true))
  end)
end)

describe("vtrix specifics", function()
  it("wraps the fields in input[0].params and reads usage.cost as a number", function()
    local client = client_for("vtrix")
    local task = assert(client:submit(params{ seed = 3, wm_position = 2, watermark = true }))
    local sub = requests{ method = "POST", path = P.vtrix.submit }[1]
    assert.equal("Bearer " .. KEY, header(sub, "authorization"))
    local body = require("vidu.json").decode(sub.body)
    assert.equal("viduq1_img2video", body.model)
    local p = body.input[1].params
    assert.equal(PROMPT, p.prompt)
    assert.equal(3, p.seed)
    assert.equal(2, p.wm_position)
    assert.equal(1, #p.images)
    assert.is_true((task:wait{ timeout = 30 }))
    assert.is_number(task.cost)
  end)

  it("reads an error object in a 200 answer as a provider error", function()
    emu:fault{ method = "POST", path = P.vtrix.submit, kind = "status", status = 200,
      body = '{"error":{"code":8008003002,"message":"Invalid parameter value"}}' }
    local task, err = client_for("vtrix"):submit(params{ image = "https://example.com/in.png" })
    assert.is_nil(task)
    assert.equal("provider", err.kind)
    assert.equal(8008003002, err.code)
  end)

  it("refuses a request body over 20 MB before sending it", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(assert(io.open(IMAGE, "rb")):read(64))
    f:seek("set", 13 * 1000 * 1000)
    f:write("\0")
    f:close()
    local task, err = client_for("vtrix"):submit(params{ image = path, payload = ("\226\130\172"):rep(1000000) })
    os.remove(path)
    assert.is_nil(task)
    assert.equal("invalid", err.kind)
    assert.equal("body", err.field)
    assert.equal(20000000, err.limit)
    assert.equal(0, count())
  end)
end)
