-- The task model: drivers read provider answers into observations (pure, one row per case),
-- Task:apply is the one place a task's state changes and never goes back, client:check
-- validates without sending, events follow a task's life, and a task's handle re-attaches
-- in a fresh process, for all five providers.
-- luacheck: max line length 130
local vidu = require("vidu")
local json = require("vidu.json")
local client_mod = require("vidu.client")
local scheduler = require("vidu.scheduler")
local registry = require("vidu.providers")
local emulator = require("support.emulator")
local util = require("support.util")

local KEY = "sk-task-model-spec-0123456789"
local IMAGE = "spec/fixtures/png_640x360.png"
local URL_IMAGE = "https://example.com/in.png"
local PROMPT = "The astronaut waved and the camera moved up."
-- Each provider's submit path on the emulator (the paid request).
local SUBMIT = {
  fal = "/fal-ai/vidu/q1/image-to-video", vidu = "/ent/v2/img2video", relay = "/vidu/v2/img2video",
  wavespeed = "/api/v3/vidu/image-to-video-2.0", vtrix = "/model/v1/generation",
}

-- Only the fields a row names are compared (nil in a row means "must be nil").
local function check_obs(obs, want, label)
  assert.is_table(obs, label)
  for _, k in ipairs({ "status", "video_url", "cover_url", "cost", "queue_position", "progress" }) do
    assert.are.equal(want[k], obs[k], label .. ": " .. k)
  end
  if want.error then
    assert.is_table(obs.error, label .. ": error")
    for k, v in pairs(want.error) do assert.are.equal(v, obs.error[k], label .. ": error." .. k) end
  else
    assert.is_nil(obs.error, label .. ": error")
  end
end

describe("observations (drivers read, pure)", function()
  local V = "https://cdn.example/v.mp4"
  local C = "https://cdn.example/c.jpg"
  -- { provider, decoded answer, expected observation }
  local rows = {
    { "vidu", { state = "created" }, { status = "queued" } },
    { "vidu", { state = "queueing", credits = 10 }, { status = "queued", cost = 10 } },
    { "vidu", { state = "scheduled" }, { status = "queued" } },
    { "vidu", { state = "processing", progress = 40 }, { status = "running", progress = 40 } },
    { "vidu", { state = "success", credits = 25, creations = { { url = V, cover_url = C } } },
      { status = "succeeded", video_url = V, cover_url = C, cost = 25 } },
    { "vidu", { state = "success" }, { status = "succeeded" } }, -- no URL: the task decides
    { "vidu", { state = "failed", err_code = "InternalServiceFailure" },
      { status = "failed", error = { kind = "failed", code = "InternalServiceFailure" } } },
    { "vidu", { state = "failed", err_code = "CreationPolicyViolation" },
      { status = "failed", error = { kind = "moderated", code = "CreationPolicyViolation" } } },
    { "vidu", { state = "failed", err_code = "UserCancelled" }, { status = "canceled", error = { code = "UserCancelled" } } },
    { "vidu", { state = "mystery" }, {} },
    { "vidu", { state = "canceled" }, { status = "canceled" } },
    { "vidu", { state = "cancelled" }, { status = "canceled" } },
    { "vidu", { state = "preparation" }, { status = "queued" } },
    { "relay", { state = "processing" }, { status = "running" } },
    { "relay", { state = "success", creations = { { url = V } } }, { status = "succeeded", video_url = V } },
    { "wavespeed", { status = "created" }, { status = "queued" } },
    { "wavespeed", { status = "processing" }, { status = "running" } },
    { "wavespeed", { status = "completed", outputs = { V } }, { status = "succeeded", video_url = V } },
    { "wavespeed", { status = "failed", code = 1200, error = "nsfw" },
      { status = "failed", error = { kind = "moderated", code = 1200, message = "nsfw" } } },
    { "wavespeed", { status = "failed", code = 5001, error = "busy" },
      { status = "failed", error = { kind = "failed", code = 5001, retryable = true } } },
    { "wavespeed", { status = "timeout" }, { status = "failed", error = { code = "timeout" } } },
    { "wavespeed", { status = "cancelled" }, { status = "canceled" } },
    { "vtrix", { id = "t", status = "pending" }, { status = "queued" } },
    { "vtrix", { id = "t", status = "in_progress", progress = 50 }, { status = "running", progress = 50 } },
    { "vtrix", { id = "t", status = "completed", usage = { cost = "0.40" }, output = { { content = { { url = V } } } } },
      { status = "succeeded", video_url = V, cost = 0.4 } },
    { "vtrix", { data = { id = "t", status = "processing" } }, { status = "running" } },
    { "vtrix", { id = "t", status = "failed", error = { code = 8008003098, message = "NSFW content detected" } },
      { status = "failed", error = { kind = "moderated", code = 8008003098 } } },
    { "vtrix", { id = "t", status = "failed", error = { code = 8008003099, message = "down" } },
      { status = "failed", error = { kind = "failed", retryable = true, message = "provider unavailable: down" } } },
    { "vtrix", { id = "t", status = "cancelled" }, { status = "canceled" } },
    { "fal", { status = "IN_QUEUE", queue_position = 3 }, { status = "queued", queue_position = 3 } },
    { "fal", { status = "IN_PROGRESS", logs = { { message = "step" } } }, { status = "running" } },
    { "fal", { status = "CANCELLED" }, { status = "canceled" } },
    { "fal", { status = "WHATEVER" }, { status = "running" } },
  }
  for i, row in ipairs(rows) do
    it(string.format("%s #%d: %s", row[1], i, json.encode(row[2]):sub(1, 60)), function()
      local obs = registry.driver(row[1]).read(row[2])
      check_obs(obs, row[3], row[1] .. " #" .. i)
      assert.are.equal(row[2].data or row[2], obs.raw)
    end)
  end

  it("fal: COMPLETED asks for the result, which decides", function()
    local fal = registry.driver("fal")
    local obs, completed = fal.read({ status = "COMPLETED" })
    assert.are.equal("running", obs.status)
    assert.is_true(completed)
    check_obs(fal.read_result({ video = { url = V } }, 200, {}), { status = "succeeded", video_url = V }, "ok")
    check_obs(fal.read_result({ detail = "boom" }, 400, { error = "it broke", error_type = "downstream_service_error" }),
      { status = "failed", error = { kind = "failed", code = "downstream_service_error", message = "it broke" } }, "failed")
    check_obs(fal.read_result({ detail = "Request timed out" }, 504, {}, { ["x-fal-request-timeout-type"] = "user" }),
      { status = "failed", error = { kind = "timeout" } }, "start timeout")
    -- No verdict: a gateway's 502 page, a 200 without a video, a 500 (the video may exist).
    for _, case in ipairs({ { nil, 502 }, { {}, 200 }, { { detail = "x", type = "internal" }, 500 }, { nil, 404 } }) do
      local none, why = fal.read_result(case[1], case[2], {})
      assert.is_nil(none)
      assert.is_string(why)
    end
    check_obs(fal.read_result({ detail = { { msg = "bad", type = "content_policy_violation" } } }, 422, {}),
      { status = "failed", error = { kind = "moderated", code = "content_policy_violation" } }, "moderated")
    check_obs(fal.read_result({}, 400, { error_type = "request_cancelled" }),
      { status = "canceled", error = { code = "request_cancelled" } }, "canceled")
  end)

  it("answers that are not objects read as nil (the poll then reports a provider error)", function()
    for _, name in ipairs(registry.names) do
      assert.is_nil(registry.driver(name).read("not json"), name)
      assert.is_nil(registry.driver(name).read(nil), name)
    end
  end)
end)

describe("Task:apply", function()
  local client, Task
  local function test_client(on_event)
    return client_mod.new({
      name = "test", env_key = "VIDU_TEST_KEY", default_base_url = "http://127.0.0.1:9",
      auth_header = function(k) return "Bearer " .. k end,
    }, { api_key = KEY, scheduler = scheduler.new(), on_event = on_event })
  end
  before_each(function()
    Task = require("vidu.task")
    client = test_client()
  end)

  -- { sequence of observed statuses, the status the task ends with }
  local rows = {
    { { "running", "queued" }, "running" },                       -- a late "queued" answer
    { { "succeeded", "running" }, "succeeded" },
    { { "failed", "succeeded" }, "failed" },
    { { "canceled", "running", "succeeded" }, "canceled" },
    { { "queued", "running", "running", "succeeded" }, "succeeded" },
    { { "running", "failed", "queued" }, "failed" },
  }
  for i, row in ipairs(rows) do
    it("never moves back (#" .. i .. ": " .. table.concat(row[1], " -> ") .. ")", function()
      local task = Task.new(client, { id = "t" .. i })
      for _, st in ipairs(row[1]) do
        task:apply({ status = st, video_url = st == "succeeded" and "https://x/v.mp4" or nil })
      end
      assert.are.equal(row[2], task.status)
    end)
  end

  it("a terminal task ignores every later answer, its fields included", function()
    local task = Task.new(client, { id = "t" })
    task:apply({ status = "succeeded", video_url = "https://x/1.mp4" })
    assert.is_false(task:apply({ status = "succeeded", video_url = "https://x/2.mp4", progress = 100 }))
    assert.are.equal("https://x/1.mp4", task.video_url)
    assert.is_nil(task.progress)
  end)

  it("a stale answer does not change queue position, and progress only grows", function()
    local task = Task.new(client, { id = "t" })
    assert.is_true(task:apply({ status = "queued", queue_position = 4 }))
    assert.is_true(task:apply({ status = "running", progress = 50 }))
    assert.is_false(task:apply({ status = "queued", queue_position = 9 }))
    assert.is_nil(task.queue_position)
    task:apply({ progress = 30 })
    assert.are.equal(50, task.progress)
  end)

  it("builds the terminal errors in one place, with the task id and never the key", function()
    local cases = {
      { { status = "failed", error = { kind = "failed", code = "E1", message = "boom" } }, "failed", "generation failed: boom" },
      { { status = "failed", error = { kind = "moderated", message = "nsfw" } }, "moderated",
        "content moderation refused the task: nsfw" },
      { { status = "canceled" }, "canceled", "the task was canceled" },
      { { status = "failed", error = { message = "echo " .. KEY } }, "failed", "generation failed: echo ***" },
      { { status = "succeeded" }, "provider", "success but gave no video URL" },
    }
    for i, c in ipairs(cases) do
      local task = Task.new(client, { id = "e" .. i })
      task:apply(c[1])
      local ok, err = task:wait()
      assert.is_nil(ok)
      assert.are.equal(c[2], err.kind, "case " .. i)
      assert.are.equal("e" .. i, err.task_id)
      assert.truthy(err.message:find(c[3], 1, true), err.message)
      assert.falsy(tostring(err):find(KEY, 1, true))
    end
  end)

  it("a failure after our own cancel reads as canceled", function()
    local task = Task.new(client, { id = "c" })
    task.cancel_requested = true
    task:apply({ status = "failed", error = { message = "stopped" } })
    assert.are.equal("canceled", task.status)
    assert.are.equal("canceled", task.error.kind)
  end)

  it("refuses what is not an observation", function()
    local task = Task.new(client, { id = "x" })
    assert.has_error(function() task:apply({ status = "done" }) end)
    assert.has_error(function() task:apply({ stauts = "queued" }) end)
    assert.has_error(function() task:apply("queued") end)
  end)

  it("emits updated on each change and finished once", function()
    local seen = {}
    local c = test_client(function(ev) seen[#seen + 1] = ev.type .. ":" .. tostring(ev.status) end)
    local task = Task.new(c, { id = "ev" })
    task:apply({ status = "queued", queue_position = 2 })
    task:apply({ status = "queued", queue_position = 2 })   -- nothing new
    task:apply({ status = "running" })
    task:apply({ status = "succeeded", video_url = "https://x/v.mp4" })
    task:apply({ status = "succeeded", video_url = "https://x/v.mp4" })
    assert.are.same({ "updated:queued", "updated:running", "finished:succeeded" }, seen)
  end)
end)

describe("against the emulator", function()
  local emu, dir

  setup(function()
    emu = emulator.start{ seed = 11 }
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
  end)
  teardown(function()
    if emu then emu:stop() end
    os.execute("rm -rf " .. dir)
  end)
  before_each(function() emu:reset{ progress = "polls", polls = 2, outcome = "success" } end)

  local function client_for(name, opts) return emu:client(name, KEY, opts) end

  for _, name in ipairs(registry.names) do
    describe(name, function()
      it("client:check validates as submit does and sends nothing", function()
        local c = client_for(name)
        local p = assert(c:check{ image = IMAGE, prompt = PROMPT, seed = 5 })
        assert.are.equal(registry.driver(name).rules.default_model, p.model)
        assert.are.equal("file", p.image.source)
        assert.are.equal(5, p.seed)
        local none, err = c:check{ image = IMAGE, prompt = PROMPT, seed = -7 }
        assert.is_nil(none)
        assert.are.equal("seed", err.field)
        assert.has_error(function() c:check{ image = IMAGE, promptt = "x" } end)
        assert.are.equal(0, #emu:requests{})
      end)

      it("emits submitting, submitted, updates, finished and downloaded, in order", function()
        local seen, own = {}, {}
        local c = client_for(name, { on_event = function(ev) seen[#seen + 1] = ev end })
        local task = assert(c:submit({ image = IMAGE, prompt = PROMPT }, {
          on_event = function(ev) own[#own + 1] = ev.type end,
        }))
        assert.is_true((task:wait{ timeout = 30 }))
        local out = dir .. "/" .. name .. "-events.mp4"
        assert.is_true((task:download(out)))
        local types = {}
        for i, ev in ipairs(seen) do types[i] = ev.type end
        assert.are.equal("submitting", types[1])
        assert.is_table(seen[1].params)
        assert.are.equal(PROMPT, seen[1].params.prompt)
        assert.is_nil(seen[1].task)
        assert.are.equal("submitted", types[2])
        assert.are.equal(task, seen[2].task)
        assert.are.equal(task.handle, seen[2].handle)
        assert.are.equal("downloaded", types[#types])
        assert.are.equal(out, seen[#types].path)
        assert.are.equal("finished", types[#types - 1])
        assert.are.equal("succeeded", seen[#types - 1].status)
        for i = 3, #types - 2 do assert.are.equal("updated", types[i]) end
        assert.are.same(types, own)
        -- The submitting event left before the paid request: the emulator saw it after.
        assert.are.equal(1, #emu:requests{ method = "POST", path = SUBMIT[name] })
      end)

      it("emits error (not submitted) when the submit is refused", function()
        emu:reset{ progress = "polls", polls = 2, keys = { [name] = { "the-right-key" } } }
        local seen = {}
        local c = client_for(name, { api_key = "wrong-key-abcdef",
          on_event = function(ev) seen[#seen + 1] = ev.type end })
        local task, err = c:submit{ image = "https://example.com/in.png", prompt = PROMPT }
        assert.is_nil(task)
        assert.are.equal("auth", err.kind)
        assert.are.same({ "submitting", "error" }, seen)
      end)

      it("re-attaches by handle in a fresh process (JSON round trip), waits and downloads", function()
        local c = client_for(name)
        local task = assert(c:submit{ image = IMAGE, prompt = PROMPT })
        local encoded = json.encode(task.handle)
        assert.are.equal(name, json.decode(encoded).provider)
        assert.are.equal(task.id, json.decode(encoded).id)
        local out = dir .. "/" .. name .. "-handle.mp4"
        local script = table.concat({
          "local vidu = require('vidu')",
          "local json = require('vidu.json')",
          "local handle = json.decode(arg[1])",
          "local c = vidu.client(handle.provider, { api_key = arg[2], base_url = arg[3],",
          "  poll = { first = 0.02, max = 0.1, factor = 1.5 } })",
          "local t = assert(c:task(handle))",
          "assert(t:wait{ timeout = 30 })",
          "assert(t:download(arg[4]))",
          "io.write(json.encode({ id = t.id, status = t.status }))",
        }, "\n")
        local path = util.write_tmp(script)
        local lua = os.getenv("VIDU_LUA") or "lua5.4"
        local cmd = table.concat({ lua, util.shell_quote(path), util.shell_quote(encoded), util.shell_quote(KEY),
          util.shell_quote(emu.url), util.shell_quote(out) }, " ") .. " 2>&1"
        local p = assert(io.popen(cmd))
        local got = p:read("*a")
        p:close()
        os.remove(path)
        local ok, res = pcall(json.decode, got)
        assert.is_true(ok and type(res) == "table", got)
        assert.are.equal(task.id, res.id)
        assert.are.equal("succeeded", res.status)
        local data = util.read_file(out)
        assert.are.equal("ftyp", data:sub(5, 8))
        -- One task on the provider: the child found it again, it did not submit.
        assert.are.equal(1, #emu:requests{ method = "POST", path = SUBMIT[name] })
      end)
    end)
  end

  it("keeps no echoed image in task.raw (Vidu's create answer sends the data: URI back)", function()
    local task = assert(client_for("vidu"):submit{ image = IMAGE })
    local echoed = task.raw.images[1]
    assert.is_string(echoed)
    assert.truthy(echoed:find("not kept", 1, true), echoed:sub(1, 80))
    assert.is_true(#echoed < 100)
  end)

  it("redacts the key wherever a provider answer echoes it in task.raw", function()
    local c = client_for("vidu")
    local task = assert(c:submit{ image = "https://example.com/in.png",
      payload = "token " .. KEY .. " inside" })
    assert.are.equal("token *** inside", task.raw.payload)
    assert.is_true((task:wait{ timeout = 30 }))
    local function walk(v)
      if type(v) == "string" then assert.falsy(v:find(KEY, 1, true), v) end
      if type(v) == "table" then for _, x in pairs(v) do walk(x) end end
    end
    walk(task.raw)
    walk(task.handle)
  end)

  it("logs each request, retry and state change through the log option, never the key", function()
    local lines = {}
    local c = client_for("vidu", { log = function(level, line) lines[#lines + 1] = level .. " " .. line end })
    -- On the first poll: a task's creations or the task list that batches polls.
    emu:fault{ method = "GET", match = "^/ent/v2/tasks", kind = "status", status = 503, times = 1 }
    local task = assert(c:submit{ image = IMAGE, payload = "echo " .. KEY })
    assert.is_true((task:wait{ timeout = 30 }))
    assert.is_true((task:download(dir .. "/logged.mp4")))
    local all = table.concat(lines, "\n")
    assert.falsy(all:find(KEY, 1, true))
    assert.truthy(all:find("debug POST " .. emu.url .. "/ent/v2/img2video -> 200", 1, true), all)
    assert.truthy(all:find("(attempt 1)", 1, true))
    assert.truthy(all:find("-> 503", 1, true))
    assert.truthy(all:find("info retrying GET ", 1, true))
    assert.truthy(all:find("info vidu task " .. task.id .. " submitted (viduq1)", 1, true))
    assert.truthy(all:find("-> succeeded", 1, true))
    assert.truthy(all:find("/media/", 1, true))
  end)

  it("VIDU_LOG=debug writes the lines to stderr (the demo's requests, no key)", function()
    local lua = os.getenv("VIDU_LUA") or "lua5.4"
    local out = dir .. "/demo.mp4"
    local p = assert(io.popen("VIDU_LOG=debug VIDU_API_KEY= " .. lua .. " examples/demo.lua vidu " ..
      "spec/fixtures/png_640x360.png " .. out .. " 2>&1 >/dev/null"))
    local err = p:read("*a")
    p:close()
    assert.truthy(err:find("vidu: POST http://127.0.0.1:%d+/ent/v2/img2video %-> 200"), err)
    assert.truthy(err:find("vidu: GET http://127.0.0.1:%d+/media/"), err)
    assert.truthy(err:find("-> succeeded", 1, true), err)
  end)

  it("a handle of another provider raises", function()
    local task = assert(client_for("vidu"):submit{ image = "https://example.com/in.png" })
    assert.has_error(function() client_for("relay"):task(task.handle) end)
    assert.has_error(function() client_for("vidu"):task({ provider = "vidu" }) end)
    assert.has_error(function() client_for("vidu"):task(task.handle, { model = "viduq1" }) end)
  end)
end)

describe("callbacks: webhooks.read and client:deliver", function()
  local webhooks = require("vidu.webhooks")
  local V = "https://cdn.example/v.mp4"

  -- { provider, callback body, task id, expected observation }
  local rows = {
    { "fal", { request_id = "r1", status = "OK", payload = { video = { url = V } } }, "r1",
      { status = "succeeded", video_url = V } },
    { "fal", { request_id = "r2", status = "ERROR", error = "Invalid status code: 422",
      payload = { detail = { { msg = "flagged", type = "content_policy_violation" } } } }, "r2",
      { status = "failed", error = { kind = "moderated", code = "content_policy_violation" } } },
    { "vidu", { id = "123", state = "success", creations = { { url = V } } }, "123",
      { status = "succeeded", video_url = V } },
    { "relay", { task_id = "9", state = "processing" }, "9", { status = "running" } },
    { "wavespeed", { id = "w1", status = "completed", outputs = { V } }, "w1", { status = "succeeded", video_url = V } },
    { "wavespeed", { code = 200, data = { id = "w2", status = "failed", error = "x" } }, "w2",
      { status = "failed", error = { kind = "failed" } } },
    { "vtrix", { id = "t1", status = "completed", output = { { content = { { url = V } } } } }, "t1",
      { status = "succeeded", video_url = V } },
  }
  for i, row in ipairs(rows) do
    it(row[1] .. " #" .. i .. " reads like a poll answer", function()
      local obs, id = webhooks.read(row[1], json.encode(row[2]))
      assert.are.equal(row[3], id)
      check_obs(obs, row[4], row[1])
    end)
  end

  it("refuses what is not a callback body", function()
    local obs, err = webhooks.read("vidu", "<html>")
    assert.is_nil(obs)
    assert.are.equal("webhook", err.kind)
    assert.is_nil((webhooks.read("fal", '{"status":"OK"}')))
    assert.has_error(function() webhooks.read("sora", "{}") end)
  end)
end)

describe("callbacks against the emulator", function()
  local webhooks = require("vidu.webhooks")
  local emu
  setup(function() emu = emulator.start{ seed = 13 } end)
  teardown(function() if emu then emu:stop() end end)

  it("100 Vidu tasks finish through their verified callbacks, with polling off", function()
    emu:reset{ progress = "time", seconds = 1, outcome = "success", log_limit = 100000 }
    local s = scheduler.new()
    local c = vidu.client("vidu", { api_key = KEY, base_url = emu.url, scheduler = s,
      poll = { first = 3600, max = 3600, factor = 1.5 } })
    local hook = emu.url .. "/_emulator/health"
    local tasks, delivered, rejected = {}, {}, 0
    s:run(function()
      for i = 1, 100 do
        tasks[i] = assert(c:submit{ image = URL_IMAGE, callback_url = hook, seed = i })
      end
      -- The receiver: each callback the emulator sent, verified, then delivered.
      s:spawn(function()
        local left = 100
        while left > 0 do
          for _, d in ipairs(emu:webhooks()) do
            local a = d.attempts and d.attempts[1]
            local key = d.task_id .. "|" .. tostring(d.event)
            if a and not delivered[key] then
              delivered[key] = true
              local ok = webhooks.verify("vidu", { method = "POST", path = "/_emulator/health",
                headers = a.headers, body = d.body }, { secret = KEY })
              if not ok then
                rejected = rejected + 1
              else
                local task = assert(c:deliver(d.body))
                if task.status == "succeeded" and d.event == "success" then left = left - 1 end
              end
            end
          end
          s:sleep(0.1)
        end
      end)
      local results, nfailed = s:gather(tasks, { timeout = 60 })
      assert.are.equal(0, nfailed, tostring(results[1].err))
    end)
    assert.are.equal(0, rejected)
    for _, t in ipairs(tasks) do assert.are.equal("succeeded", t.status) end
    -- Polls: a task's creations, or the task list that batches them.
    local polls = #emu:requests{ method = "GET", match = "^/ent/v2/tasks" }
    local posts = #emu:requests{ method = "POST", path = "/ent/v2/img2video" }
    assert.are.equal(0, polls)
    assert.are.equal(100, posts)
    print(string.format("\ncallbacks: 100 generations, %d requests to the provider (%.2f per generation), %d polls",
      posts + polls, (posts + polls) / 100, polls))
  end)

  it("a late or duplicate callback never moves a finished task back", function()
    emu:reset{ progress = "polls", polls = 1, outcome = "success" }
    local c = vidu.client("vidu", { api_key = KEY, base_url = emu.url, scheduler = scheduler.new(),
      poll = { first = 0.02, max = 0.1, factor = 1.5 } })
    local task = assert(c:submit{ image = URL_IMAGE })
    assert.is_true((task:wait{ timeout = 30 }))
    local _, moved = c:deliver(json.encode({ id = task.id, state = "processing" }))
    assert.is_false(moved)
    assert.are.equal("succeeded", task.status)
    local none, err = c:deliver(json.encode({ id = "no-such", state = "success" }))
    assert.is_nil(none)
    assert.are.equal("invalid", err.kind)
  end)
end)
