-- Task: wait (backoff, on_update, timeout, cancel_on_timeout), cancel, download, re-attach,
-- with a small test driver against the scripted loopback server.
local client_mod = require("vidu.client")
local errors = require("vidu.errors")
local scheduler = require("vidu.scheduler")
local scripted = require("support.scripted")
local util = require("support.util")
local read = util.read_file

local KEY = "sk-task-spec-key-987654321"

local STATES = { queued = "queued", running = "running", success = "succeeded",
  failed = "failed", canceled = "canceled" }

-- A driver over /s/submit, /s/poll, /s/cancel (scripts set per test).
local function test_driver(url, with_cancel)
  local d = {
    name = "test", env_key = "VIDU_TEST_KEY", default_base_url = url,
    poll_defaults = { first = 0.02, max = 0.1, factor = 2 },
    auth_header = function(key) return "Bearer " .. key end,
    check = function(_, params)
      if type(params.prompt) ~= "string" then error("prompt must be a string") end
      if params.prompt == "" then
        return nil, errors.new{ kind = "invalid", field = "prompt", limit = "non-empty" }
      end
      return params
    end,
    submit = function(client, p)
      local resp, err = client:request{ method = "POST", path = "/s/submit",
        json = { prompt = p.prompt }, idempotent = false }
      if not resp then return nil, err end
      return { id = resp.json.id }, { status = "queued", raw = resp.json }
    end,
    -- Reads the scripted answer into an observation; the task decides.
    poll = function(client)
      local resp, err = client:request{ path = "/s/poll" }
      if not resp then return nil, err end
      local j = resp.json
      local obs = { raw = j, status = STATES[j.state] or "running", queue_position = j.queue,
        logs = j.logs, video_url = j.url }
      if j.state == "failed" then
        obs.error = { kind = j.moderated and "moderated" or "failed", code = j.code,
          message = "it broke" }
      end
      return obs
    end,
  }
  if with_cancel then
    d.cancel = function(client, task)
      local resp, err = client:request{ method = "PUT", path = "/s/cancel", json = { id = task.id } }
      if not resp then return nil, err end
      return { status = "canceled" }
    end
  end
  return d
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- Names in `dir` that start with `prefix` (to find leftover .part files).
local function leftovers(dir, prefix)
  local out = {}
  local p = io.popen("ls -a " .. dir)
  for name in p:lines() do
    if name:sub(1, #prefix) == prefix and name ~= prefix then out[#out + 1] = name end
  end
  p:close()
  return out
end

describe("task", function()
  local srv, client, sched, dir

  setup(function()
    srv = scripted.start()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function()
    if srv then srv:stop() end
    os.execute("rm -rf " .. dir)
  end)

  before_each(function()
    srv:reset()
    sched = scheduler.new()
    client = client_mod.new(test_driver(srv.url, true), {
      api_key = KEY, scheduler = sched, retry = { base = 0.01, cap = 0.05 },
    })
    srv:script("submit", { { status = 200, json = { id = "task-1" } } })
  end)

  it("submit returns a task; tostring shows neither key nor secrets", function()
    local task = assert(client:submit{ prompt = "hello" })
    assert.are.equal("task-1", task.id)
    assert.are.equal("test", task.provider)
    assert.are.equal("queued", task.status)
    assert.are.equal("vidu.task<test task-1: queued>", tostring(task))
    assert.are.equal("vidu.client<test>", tostring(task.client))
  end)

  it("submit validates before any request: nil, err and nothing sent", function()
    local task, err = client:submit{ prompt = "" }
    assert.is_nil(task)
    assert.are.equal("invalid", err.kind)
    assert.are.equal("prompt", err.field)
    assert.are.equal(0, #srv:log("submit"))
    assert.has_error(function() client:submit{ prompt = 42 } end)
  end)

  it("wait polls with backoff until succeeded, reporting changes", function()
    srv:script("poll", {
      { json = { state = "queued", queue = 2 } },
      { json = { state = "queued", queue = 1 } },
      { json = { state = "queued", queue = 1 } },
      { json = { state = "running", logs = { "a" } } },
      { json = { state = "running", logs = { "a", "b" } } },
      { json = { state = "success", url = srv.url .. "/s/video" } },
    })
    local updates = {}
    local task = assert(client:submit{ prompt = "p" })
    local ok, err = task:wait{ timeout = 10, on_update = function(t)
      updates[#updates + 1] = t.status .. ":" .. tostring(t.queue_position) .. ":" ..
        (t.logs and #t.logs or 0)
    end }
    assert.is_nil(err)
    assert.is_true(ok)
    assert.are.equal("succeeded", task.status)
    assert.are.same({ "queued:2:0", "queued:1:0", "running:nil:1", "running:nil:2",
      "succeeded:nil:0" }, updates)
    -- Six polls, spaced out more and more (backoff).
    local log = srv:log("poll")
    assert.are.equal(6, #log)
    assert.is_true(log[6].time - log[5].time > log[2].time - log[1].time)
    -- A finished task answers at once, without polling again.
    assert.is_true(task:wait())
    assert.are.equal(6, #srv:log("poll"))
  end)

  it("wait returns the failure, with the task id", function()
    srv:script("poll", { { json = { state = "failed", code = "E1" } } })
    local task = assert(client:submit{ prompt = "p" })
    local ok, err = task:wait()
    assert.is_nil(ok)
    assert.are.equal("failed", err.kind)
    assert.are.equal("E1", err.code)
    assert.are.equal("task-1", err.task_id)
  end)

  it("wait returns moderated and canceled as their kinds", function()
    srv:script("poll", { { json = { state = "failed", moderated = true } } })
    local task = assert(client:submit{ prompt = "p" })
    local _, err = task:wait()
    assert.are.equal("moderated", err.kind)

    srv:reset()
    srv:script("submit", { { status = 200, json = { id = "task-2" } } })
    srv:script("poll", { { json = { state = "canceled" } } })
    task = assert(client:submit{ prompt = "p" })
    _, err = task:wait()
    assert.are.equal("canceled", err.kind)
  end)

  it("transient poll errors are retried; a final one ends the wait, task re-attachable", function()
    srv:script("poll", { { status = 503 }, { status = 502 },
      { json = { state = "success", url = "http://x/v.mp4" } } })
    local task = assert(client:submit{ prompt = "p" })
    assert.is_true(task:wait{ timeout = 10 })

    srv:reset()
    srv:script("submit", { { status = 200, json = { id = "task-3" } } })
    srv:script("poll", { { status = 404, json = { message = "gone" } } })
    task = assert(client:submit{ prompt = "p" })
    local ok, err = task:wait{ timeout = 10 }
    assert.is_nil(ok)
    assert.are.equal(404, err.status)
    assert.are.equal("task-3", err.task_id)
  end)

  it("a retryable poll error outlasting the request's retries gets a few more polls", function()
    local c = client_mod.new(test_driver(srv.url, true), {
      api_key = KEY, scheduler = sched, retries = 2, retry = { base = 0.01, cap = 0.02 },
    })
    -- Two polls' worth of 503s (2 attempts each), then success.
    srv:script("poll", { { status = 503 }, { status = 503 }, { status = 503 }, { status = 503 },
      { json = { state = "success", url = "http://x/v.mp4" } } })
    local task = assert(c:submit{ prompt = "p" })
    assert.is_true(task:wait{ timeout = 10 })

    srv:reset()
    srv:script("submit", { { status = 200, json = { id = "task-4" } } })
    srv:script("poll", { { status = 503 } })
    task = assert(c:submit{ prompt = "p" })
    local ok, err = task:wait{ timeout = 10 }
    assert.is_nil(ok)
    assert.are.equal(503, err.status)
    assert.are.equal(6, #srv:log("poll"))  -- 3 polls x 2 attempts
  end)

  it("wait times out, leaving the task running", function()
    srv:script("poll", { { json = { state = "running" } } })
    local task = assert(client:submit{ prompt = "p" })
    local ok, err = task:wait{ timeout = 0.3 }
    assert.is_nil(ok)
    assert.are.equal("timeout", err.kind)
    assert.are.equal("task-1", err.task_id)
    assert.matches("still running", err.message)
    assert.are.equal(0, #srv:log("cancel"))
  end)

  it("wait's timeout is a deadline: hanging polls are cut, whatever their own timeout", function()
    local c = client_mod.new(test_driver(srv.url, true), {
      api_key = KEY, scheduler = sched, timeout = 30, retry = { base = 0.01, cap = 0.05 },
    })
    srv:script("poll", { { hang = true } })
    local task = assert(c:submit{ prompt = "p" })
    local t0 = sched:time()
    local ok, err = task:wait{ timeout = 1 }
    local took = sched:time() - t0
    assert.is_nil(ok)
    assert.are.equal("timeout", err.kind)
    assert.are.equal("task-1", err.task_id)
    assert.matches("did not finish within 1 s", err.message)
    -- Within the timeout plus at most a second (not 5 attempts of a 30 s request timeout).
    assert.is_true(took < 2.5, "took " .. took)
    assert.is_true(took >= 1, "took " .. took)
  end)

  it("wait raises on a timeout that is negative or not a number", function()
    local task = assert(client:submit{ prompt = "p" })
    assert.has_error(function() task:wait{ timeout = -1 } end)
    assert.has_error(function() task:wait{ timeout = 0 / 0 } end)
    assert.has_error(function() task:wait{ timeout = "5" } end)
  end)

  it("cancel_on_timeout cancels where the provider can", function()
    srv:script("poll", { { json = { state = "running" } } })
    srv:script("cancel", { { status = 200, json = {} } })
    local task = assert(client:submit{ prompt = "p" })
    local _, err = task:wait{ timeout = 0.2, cancel_on_timeout = true }
    assert.are.equal("timeout", err.kind)
    assert.matches("canceled", err.message)
    assert.are.equal(1, #srv:log("cancel", "PUT"))
    assert.are.equal("canceled", task.status)
  end)

  it("cancel without provider support is 'unsupported'", function()
    local c = client_mod.new(test_driver(srv.url, false), { api_key = KEY, scheduler = sched })
    srv:script("poll", { { json = { state = "running" } } })
    local task = assert(c:submit{ prompt = "p" })
    local ok, err = task:cancel()
    assert.is_nil(ok)
    assert.are.equal("unsupported", err.kind)
    local _, werr = task:wait{ timeout = 0.05, cancel_on_timeout = true,
      poll = { first = 0.01 } }
    assert.are.equal("timeout", werr.kind)
    assert.matches("cancel failed", werr.message)
  end)

  it("wait raises on unknown options", function()
    local task = assert(client:submit{ prompt = "p" })
    assert.has_error(function() task:wait{ timout = 3 } end)
    assert.has_error(function() task:wait{ poll = { fist = 1 } } end)
  end)

  it("many tasks wait concurrently inside run", function()
    srv:script("poll", { { json = { state = "running" } }, { json = { state = "success",
      url = "http://x/v.mp4" } } })
    local results, nfailed = sched:run(function()
      local tasks = {}
      for i = 1, 50 do tasks[i] = assert(client:submit{ prompt = "p" .. i }) end
      return sched:gather(tasks, { timeout = 10 })
    end)
    assert.are.equal(0, nfailed)
    assert.are.equal(50, #results)
  end)

  it("client:task re-attaches by id and polls once", function()
    srv:script("poll", { { json = { state = "running" } } })
    local task = assert(client:task("old-42"))
    assert.are.equal("old-42", task.id)
    assert.are.equal("running", task.status)
    assert.are.equal(1, #srv:log("poll"))
    srv:script("poll", { { status = 404, json = { message = "no such task" } } })
    local none, err = client:task("missing")
    assert.is_nil(none)
    assert.are.equal(404, err.status)
  end)

  describe("download", function()
    local function succeeded_task(url)
      local task = assert(client:task("dl-1", { poll = false }))
      task.status, task.video_url = "succeeded", url
      return task
    end

    it("streams into place with progress, no temporary file left", function()
      srv:script("video", { { status = 200, bytes = 200000 } })
      local task = succeeded_task(srv.url .. "/s/video")
      local path = dir .. "/ok.mp4"
      local seen, updates = 0, 0
      assert(task:download(path, {
        on_progress = function(bytes) seen = bytes end,
        on_update = function(t) assert.are.equal(task, t) updates = updates + 1 end,
      }))
      assert.are.equal(200000, #read(path))
      assert.are.equal(200000, seen)
      assert.is_true(updates >= 1)
      assert.are.same({}, leftovers(dir, "ok.mp4"))
      -- No key went to the video host.
      assert.is_nil(srv:log("video")[1].headers.authorization)
    end)

    it("on failure removes the temporary file and keeps the old target", function()
      srv:script("video", { { truncate = 100000, sent = 5000 } })
      local task = succeeded_task(srv.url .. "/s/video")
      local path = dir .. "/keep.mp4"
      local f = assert(io.open(path, "wb"))
      f:write("old")
      f:close()
      local ok, err = task:download(path)
      assert.is_nil(ok)
      assert.are.equal("network", err.kind)
      assert.are.equal("dl-1", err.task_id)
      assert.are.equal("old", read(path))
      assert.are.same({}, leftovers(dir, "keep.mp4"))
      -- Idempotent: it was retried before giving up.
      assert.is_true(#srv:log("video") > 1)
    end)

    it("renews an expired link with one poll, then downloads", function()
      srv:script("old", { { status = 403, headers = { ["Content-Type"] = "application/xml" },
        body = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>" } })
      srv:script("video", { { status = 200, bytes = 1000 } })
      srv:script("poll", { { json = { state = "success", url = srv.url .. "/s/video" } } })
      local task = succeeded_task(srv.url .. "/s/old")
      local path = dir .. "/renewed.mp4"
      assert(task:download(path))
      assert.are.equal(1000, #read(path))
      assert.are.equal(1, #srv:log("old"))    -- a 403 is not retried as it is
      assert.are.equal(1, #srv:log("poll"))
      assert.are.equal(srv.url .. "/s/video", task.video_url)
      assert.are.equal("succeeded", task.status)
    end)

    it("says the link expired (not auth) when no fresh link comes", function()
      for _, status in ipairs({ 403, 410, 404 }) do
        srv:reset()
        srv:script("old", { { status = status, body = "gone" } })
        srv:script("poll", { { json = { state = "success", url = srv.url .. "/s/old" } } })
        local task = succeeded_task(srv.url .. "/s/old")
        local ok, err = task:download(dir .. "/expired.mp4")
        assert.is_nil(ok)
        assert.are.equal("expired", err.kind)
        assert.are.equal(status, err.status)
        assert.are.equal("dl-1", err.task_id)
        assert.matches("expired or is gone", err.message)
        assert.are.equal(1, #srv:log("poll"))
        assert.are.same({}, leftovers(dir, "expired.mp4"))
      end
    end)

    it("caps the size with max_size and refuses unknown options", function()
      srv:script("video", { { status = 200, bytes = 5000 } })
      local task = succeeded_task(srv.url .. "/s/video")
      local ok, err = task:download(dir .. "/capped.mp4", { max_size = 1000 })
      assert.is_nil(ok)
      assert.are.equal("too_large", err.code)
      assert(task:download(dir .. "/capped.mp4", { max_size = 5000 }))
      assert.has_error(function() task:download(dir .. "/x.mp4", { max_sise = 1 }) end)
      assert.has_error(function() task:download(dir .. "/x.mp4", { max_size = 0 }) end)
    end)

    it("ends a download that stalls with a retryable timeout (stall_timeout)", function()
      local c = client_mod.new(test_driver(srv.url, true), {
        api_key = KEY, scheduler = sched, retries = 2, retry = { base = 0.01, cap = 0.02 },
        stall_timeout = 1,
      })
      srv:script("video", { { hang = true } })
      local task = assert(c:task("dl-9", { poll = false }))
      task.status, task.video_url = "succeeded", srv.url .. "/s/video"
      local t0 = sched:time()
      local ok, err = task:download(dir .. "/stalled.mp4")
      assert.is_nil(ok)
      assert.are.equal("timeout", err.kind)
      assert.are.equal("stalled", err.code)
      assert.is_true(err.retryable)
      assert.are.equal(2, #srv:log("video"))   -- retried once, then gave up
      assert.is_true(sched:time() - t0 < 20)
      assert.are.same({}, leftovers(dir, "stalled.mp4"))
      -- The per-download option wins over the client's.
      srv:reset()
      srv:script("video", { { hang = true } })
      local _, err2 = task:download(dir .. "/stalled.mp4", { stall_timeout = 1 })
      assert.are.equal("stalled", err2.code)
    end)

    it("refuses a path that is not a regular file, fetching nothing", function()
      srv:script("video", { { status = 200, bytes = 10 } })
      local task = succeeded_task(srv.url .. "/s/video")
      local fifo = dir .. "/a.fifo"
      assert(os.execute("mkfifo " .. fifo))
      for _, target in ipairs({ fifo, dir, "/dev/null" }) do
        local ok, err = task:download(target)
        assert.is_nil(ok)
        assert.are.equal("io", err.kind, target)
        assert.are.equal("path", err.field)
      end
      assert.are.equal(0, #srv:log("video"))
      os.remove(fifo)
    end)

    it("retries a 503 and then succeeds", function()
      srv:script("video", { { status = 503 }, { status = 200, bytes = 1000 } })
      local task = succeeded_task(srv.url .. "/s/video")
      local path = dir .. "/retry.mp4"
      assert(task:download(path))
      assert.are.equal(1000, #read(path))
    end)

    it("refuses a task without a video and non-http URLs", function()
      local task = assert(client:task("dl-2", { poll = false }))
      local ok, err = task:download(dir .. "/none.mp4")
      assert.is_nil(ok)
      assert.are.equal("invalid", err.kind)
      task.video_url = "file:///etc/passwd"
      ok, err = task:download(dir .. "/none.mp4")
      assert.is_nil(ok)
      assert.are.equal("invalid", err.kind)
      assert.is_false(file_exists(dir .. "/none.mp4"))
    end)

    it("reports a directory that cannot be written as an error, leaving nothing", function()
      srv:script("video", { { status = 200, bytes = 10 } })
      local task = succeeded_task(srv.url .. "/s/video")
      local ok, err = task:download(dir .. "/no/such/dir/x.mp4")
      assert.is_nil(ok)
      assert.are.equal("io", err.kind)
    end)
  end)
end)

-- The same runtime with the real Vidu driver against the emulator: the paths a user meets.
describe("task against the emulator (vidu driver)", function()
  local emulator = require("support.emulator")
  local vidu = require("vidu")
  local emu, client, sched
  local IMAGE = "spec/fixtures/png_33x17.png"
  local SUBMIT = "/ent/v2/img2video"

  setup(function() emu = emulator.start{ seed = 7 } end)
  teardown(function() if emu then emu:stop() end end)

  before_each(function()
    emu:reset{ polls = 2 }
    sched = scheduler.new()
    client = vidu.client("vidu", { api_key = KEY, base_url = emu.url, scheduler = sched,
      poll = { first = 0.02, max = 0.1, factor = 2 }, retry = { base = 0.05, cap = 0.2 } })
  end)

  it("submits, waits, downloads an MP4", function()
    local path = os.tmpname()
    local task = assert(client:submit{ image = IMAGE, prompt = "wave", model = "viduq1" })
    assert(task:wait{ timeout = 20 })
    assert(task:download(path))
    local bytes = read(path)
    os.remove(path)
    assert.are.equal("ftyp", bytes:sub(5, 8))
  end)

  it("a reset after the submit was read: exactly one POST, uncertain, may exist", function()
    emu:fault{ method = "POST", path = SUBMIT, kind = "reset_after", times = 1 }
    local task, err = client:submit{ image = IMAGE, prompt = "wave", model = "viduq1" }
    assert.is_nil(task)
    assert.are.equal("uncertain", err.kind)
    assert.is_true(err.may_exist)
    assert.are.equal(1, #emu:requests{ method = "POST", path = SUBMIT })
  end)

  it("a 503 on submit is re-sent; a 503 on a poll is retried", function()
    emu:fault{ method = "POST", path = SUBMIT, kind = "status", status = 503, times = 1 }
    -- Polls: a task's creations or the task list that batches them.
    emu:fault{ method = "GET", match = "^/ent/v2/tasks", kind = "status", status = 503, times = 2 }
    local task = assert(client:submit{ image = IMAGE, prompt = "wave", model = "viduq1" })
    assert(task:wait{ timeout = 20 })
    assert.are.equal(2, #emu:requests{ method = "POST", path = SUBMIT })
  end)

  it("429 with Retry-After on a poll: the retry comes no earlier than asked", function()
    local task = assert(client:submit{ image = IMAGE, prompt = "wave", model = "viduq1" })
    emu:fault{ method = "GET", match = "^/ent/v2/tasks", kind = "status", status = 429,
      retry_after = "1", times = 1 }
    assert(task:wait{ timeout = 20 })
    local polls = emu:requests{ method = "GET", match = "^/ent/v2/tasks" }
    assert.is_true(#polls >= 2)
    assert.is_true(polls[2].time - polls[1].time >= 1.0)
  end)

  it("100 tasks at once in one run", function()
    local results, nfailed = sched:run(function()
      local fns = {}
      for i = 1, 100 do
        fns[i] = function()
          local task, err = client:submit{ image = IMAGE, prompt = "n" .. i, model = "viduq1" }
          if not task then return nil, err end
          return task:wait{ timeout = 30 }
        end
      end
      return sched:gather(fns)
    end)
    assert.are.equal(0, nfailed)
    assert.are.equal(100, #results)
  end)
end)
