-- The clients against the emulator behaving as the providers do today (issue 8): what a user
-- meets on day one. Each case sets the emulator the way the real service answers and checks
-- what the client makes of it.
-- luacheck: max line length 130
local scheduler = require("vidu.scheduler")
local emulator = require("support.emulator")
local util = require("support.util")

local KEY = "today-key-0123456789"
local IMAGE = "spec/fixtures/png_640x360.png"
local URL_IMAGE = "https://example.com/in.png"
local PROMPT = "The astronaut waved and the camera moved up."
local FAL_RESULT = "^/fal%-ai/vidu/requests/[^/]+$"

local emu, dir

local function client_for(name, opts)
  local o = { retry = { base = 0.02, cap = 0.1 }, scheduler = scheduler.new() }
  for k, v in pairs(opts or {}) do o[k] = v end
  return emu:client(name, KEY, o)
end

local function count(f) return #emu:requests(f or {}) end

emulator.suite{ seed = 5, ready = function(e, d) emu, dir = e, d end }

describe("fal", function()
  -- A result that fails to load is not a failed generation: the video may exist.
  for _, fault in ipairs({
    { kind = "status", status = 502 }, { kind = "html_502" }, { kind = "truncate" }, { kind = "malformed_json" },
    { kind = "status", status = 200, body = "<html>gateway</html>" },
  }) do
    it("keeps the task when its result does not load (" .. fault.kind .. " " .. tostring(fault.status) .. ")", function()
      local c = client_for("fal", { retries = 2 })
      local task = assert(c:submit{ image = URL_IMAGE, prompt = PROMPT })
      local f = { method = "GET", match = FAL_RESULT, times = 100 }
      for k, v in pairs(fault) do f[k] = v end
      emu:fault(f)
      local ok, err = task:wait{ timeout = 30 }
      assert.is_nil(ok)
      assert.is_true(err.retryable, tostring(err))
      assert.are.equal(task.id, err.task_id)
      assert.are_not.equal("failed", task.status)
      assert.is_nil(task.error)
      -- The fault clears: the same task, waited again, has its video. Nothing was paid twice.
      emu:control("DELETE", "/_emulator/faults")
      assert.is_true((task:wait{ timeout = 30 }))
      assert.are.equal("succeeded", task.status)
      assert.truthy(task.video_url)
    end)
  end

  it("states a failed generation (HTTP 400 with its type) as failed", function()
    emu:next{ outcome = "failed" }
    local task = assert(client_for("fal"):submit{ image = URL_IMAGE, prompt = PROMPT })
    local _, err = task:wait{ timeout = 30 }
    assert.are.equal("failed", err.kind)
    assert.are.equal(400, err.status)
    assert.are.equal("downstream_service_error", err.code)
  end)

  it("ends a request its start_timeout expired in the queue as kind timeout", function()
    emu:reset{ progress = "time", seconds = 60 }
    local task = assert(client_for("fal"):submit{ image = URL_IMAGE, prompt = PROMPT, start_timeout = 1.5 })
    local ok, err = task:wait{ timeout = 30 }
    assert.is_nil(ok)
    assert.are.equal("timeout", err.kind)
    assert.are.equal("failed", task.status)
    assert.are.equal(task.id, err.task_id)
  end)

  it("does not send the key to a status URL on another host", function()
    emu:fault{ method = "POST", path = "/fal-ai/vidu/q1/image-to-video", kind = "status", status = 200, times = 1,
      body = '{"request_id":"r-elsewhere","status_url":"http://127.0.0.2:9/x/status",'
        .. '"response_url":"http://127.0.0.2:9/x","cancel_url":"http://127.0.0.2:9/x/cancel"}' }
    local c = client_for("fal")
    local task = assert(c:submit{ image = URL_IMAGE, prompt = PROMPT })
    assert.are.equal(emu.url .. "/fal-ai/vidu/requests/r-elsewhere/status", task.status_url)
    -- And client:request itself refuses to send the key off its hosts.
    local resp, err = c:request{ url = "http://127.0.0.2:9/anything" }
    assert.is_nil(resp)
    assert.are.equal("invalid", err.kind)
    assert.matches("not one of fal's API hosts", err.message)
  end)
end)

describe("vidu", function()
  it("refuses a local image over 10 MB before sending anything, naming the ways out", function()
    local path = dir .. "/big.png"
    local f = assert(io.open(path, "wb"))
    f:write(util.read_file(IMAGE):sub(1, 64))
    f:seek("set", 12 * 1000 * 1000)
    f:write("\0")
    f:close()
    for _, upload in ipairs({ nil, true }) do
      local task, err = client_for("vidu"):submit{ image = path, upload = upload }
      assert.is_nil(task)
      assert.are.equal("image", err.kind)
      assert.are.equal(10000000, err.limit)
      assert.matches("http%(s%) URL", err.message)
    end
    assert.are.equal(0, count())
  end)

  it("reads the canceled state as terminal (vidu_cancel_state = canceled)", function()
    emu:config{ vidu_cancel_state = "canceled" }
    emu:next{ polls = 1000 }
    local task = assert(client_for("vidu"):submit{ image = URL_IMAGE })
    assert.is_true((task:cancel()))
    local _, err = task:wait{ timeout = 10 }
    assert.are.equal("canceled", err.kind)
    assert.are.equal("canceled", task.status)
  end)

  it("reports Vidu's progress on the task", function()
    emu:next{ polls = 6 }
    local seen = {}
    local task = assert(client_for("vidu"):submit{ image = URL_IMAGE })
    assert.is_true((task:wait{ timeout = 30, on_update = function(t) seen[#seen + 1] = t.progress end }))
    assert.are.equal(100, task.progress)
    local rising = false
    for _, p in ipairs(seen) do if p and p > 0 and p < 100 then rising = true end end
    assert.is_true(rising)
  end)

  it("renews an expired video link by polling once, then downloads", function()
    emu:config{ media_ttl = 1 }
    local c = client_for("vidu")
    local task = assert(c:submit{ image = URL_IMAGE })
    assert.is_true((task:wait{ timeout = 30 }))
    local old = task.video_url
    c.scheduler:sleep(2.2) -- links carry whole seconds: expiry is at most ttl + 1 s away
    -- A poll: the task's creations, or the task list that batches polls.
    local polls = count{ method = "GET", match = "^/ent/v2/tasks" }
    local out = dir .. "/renewed.mp4"
    assert.is_true((task:download(out)))
    assert.are.equal("ftyp", util.read_file(out):sub(5, 8))
    assert.are_not.equal(old, task.video_url)
    assert.are.equal(polls + 1, count{ method = "GET", match = "^/ent/v2/tasks" })
  end)
end)

describe("wavespeed", function()
  it("ends a completed prediction whose output is flagged NSFW as moderated, outputs kept", function()
    emu:next{ outcome = "nsfw" }
    local task = assert(client_for("wavespeed"):submit{ image = URL_IMAGE, prompt = PROMPT })
    local ok, err = task:wait{ timeout = 30 }
    assert.is_nil(ok)
    assert.are.equal("moderated", err.kind)
    assert.are.equal("failed", task.status)
    assert.truthy(task.video_url)
    assert.are.same({ true }, task.has_nsfw_contents)
  end)
end)

describe("vtrix", function()
  it("reads a 403 as quota (insufficient balance), not auth", function()
    emu:fault{ method = "POST", path = "/model/v1/generation", kind = "status", status = 403, times = 1 }
    local task, err = client_for("vtrix"):submit{ image = URL_IMAGE }
    assert.is_nil(task)
    assert.are.equal("quota", err.kind)
    assert.are.equal(403, err.status)
    assert.are.equal("002014001", err.code)
  end)

  it("matches error codes given as strings", function()
    emu:config{ vtrix_string_codes = true }
    emu:next{ outcome = "failed" }
    local task = assert(client_for("vtrix"):submit{ image = URL_IMAGE })
    local _, err = task:wait{ timeout = 30 }
    assert.are.equal("failed", err.kind)
    assert.is_string(err.code)
    assert.are.equal("8008003098", err.code)
    assert.are.equal("generation failed: Generation failed", err.message)
  end)
end)

describe("limits: a batch queues in the client", function()
  it("keeps at most `concurrent` tasks in flight", function()
    emu:reset{ progress = "polls", polls = 3, outcome = "success" }
    local c = client_for("wavespeed", { limits = { concurrent = 2 } })
    local max_live, live = 0, 0
    c.scheduler:run(function()
      local jobs = {}
      for i = 1, 6 do
        jobs[i] = function()
          local task = assert(c:submit{ image = URL_IMAGE, prompt = PROMPT, seed = i })
          live = live + 1
          if live > max_live then max_live = live end
          assert(task:wait{ timeout = 30 })
          live = live - 1
        end
      end
      local _, nfailed = c.scheduler:gather(jobs)
      assert.are.equal(0, nfailed)
    end)
    assert.are.equal(2, max_live)
    assert.are.equal(6, count{ method = "POST", path = "/api/v3/vidu/image-to-video-2.0" })
  end)

  it("sends at most `rate` submits per `per` seconds", function()
    local c = client_for("vidu", { limits = { rate = 2, per = 0.5 } })
    c.scheduler:run(function()
      for _ = 1, 5 do assert(c:submit{ image = URL_IMAGE }) end
    end)
    local posts = emu:requests{ method = "POST", path = "/ent/v2/img2video" }
    assert.are.equal(5, #posts)
    -- A lower bound from the emulator's own clock: the 3rd waited for the window.
    assert.is_true(posts[3].time - posts[1].time >= 0.45)
    assert.is_true(posts[5].time - posts[3].time >= 0.45)
  end)

  it("raises for limits that cannot be right", function()
    assert.has_error(function() client_for("vidu", { limits = { concurent = 2 } }) end)
    assert.has_error(function() client_for("vidu", { limits = { concurrent = 0 } }) end)
    assert.has_error(function() client_for("vidu", { limits = { rate = 1.5 } }) end)
  end)
end)
