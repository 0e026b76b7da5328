-- The emulator's fal queue as the official clients meet it (issue 8), over HTTP to a real
-- emulator process: `logs` on every status answer, fal's documented failure results (400
-- downstream_service_error, 422 content_policy_violation, X-Fal-Retryable optional), the
-- start timeout (X-Fal-Request-Timeout -> 504 with X-Fal-Request-Timeout-Type: user), queue
-- priority and the runner hint, and every way a result can fail to load injected on the result
-- path with the fault mechanism. No test sleeps for a fixed time: deadlines are awaited.
local core = require("vidu.core")
local cjson = require("cjson")
local emulator = require("support.emulator")
local util = require("support.util")

local PNG = util.read_file("spec/fixtures/png_640x360.png")
local DATA_URI = "data:image/png;base64," .. core.b64encode(PNG)
local FAL = "Key fal-id:fal-secret"
local SUBMIT = "/fal-ai/vidu/q1/image-to-video"
local RESULT_PATH = "^/fal%-ai/vidu/requests/[^/]+$"

local emu

local function call(method, where, opts)
  opts = opts or {}
  opts.auth = opts.auth or FAL
  return emu:call(method, where, opts)
end

local function submit(headers, fields)
  local b = { prompt = "The astronaut waved.", image_url = DATA_URI }
  for k, v in pairs(fields or {}) do b[k] = v end
  return call("POST", SUBMIT, { json = b, headers = headers })
end

local function task_count()
  return emu:control("GET", "/_emulator/health").tasks
end

setup(function()
  emu = emulator.start{ seed = 5, args = { "--no-ffmpeg" } }
end)

teardown(function()
  if emu then emu:stop() end
end)

before_each(function()
  emu:reset()
end)

describe("emulator fal status logs", function()
  it("carries logs on every status, an empty array unless logs=1 was asked", function()
    emu:next{ polls = 4 }
    local j = submit().json
    local function status(q) return call("GET", j.status_url .. q) end
    local queued = status("?logs=0")
    assert.are.equal("IN_QUEUE", queued.json.status)
    assert.are.same({}, queued.json.logs)
    assert.truthy(queued.body:find('"logs":[]', 1, true))
    local running = status("")
    assert.are.equal("IN_PROGRESS", running.json.status)
    assert.truthy(running.body:find('"logs":[]', 1, true))
    local with = status("?logs=1")
    assert.are.equal("IN_PROGRESS", with.json.status)
    assert.is_true(#with.json.logs >= 1)
    assert.are.equal("INFO", with.json.logs[1].level)
    local done = status("?logs=false")
    assert.are.equal("COMPLETED", done.json.status)
    assert.are.same({}, done.json.logs)
    assert.truthy(done.body:find('"logs":[]', 1, true))
  end)

  it("carries logs in every server-sent event too", function()
    emu:reset{ stream_interval = 0.01 }
    emu:next{ polls = 3 }
    local j = submit().json
    local r = call("GET", j.status_url .. "/stream")
    local n = 0
    for data in r.body:gmatch("data: ([^\n]+)\n\n") do
      n = n + 1
      assert.are.same({}, cjson.decode(data).logs)
      assert.truthy(data:find('"logs":[]', 1, true))
    end
    assert.is_true(n >= 2)
  end)
end)

describe("emulator fal failure results", function()
  it("a failed generation: 400 downstream_service_error with url, no X-Fal-Retryable", function()
    emu:next{ polls = 1, outcome = "failed" }
    local j = submit().json
    local s = call("GET", j.status_url).json
    assert.are.equal("COMPLETED", s.status)
    assert.are.equal("downstream_service_error", s.error_type)
    local r = call("GET", j.response_url)
    assert.are.equal(400, r.status)
    local d = r.json.detail[1]
    assert.are.same({ "body" }, d.loc)
    assert.are.equal("downstream_service_error", d.type)
    assert.are.equal("https://docs.fal.ai/errors/#downstream_service_error", d.url)
    assert.is_string(d.msg)
    assert.is_nil(r.headers["x-fal-retryable"])
  end)

  it("a policy refusal: 422 content_policy_violation with url", function()
    emu:next{ polls = 1, outcome = "moderated" }
    local j = submit().json
    call("GET", j.status_url)
    local r = call("GET", j.response_url)
    assert.are.equal(422, r.status)
    assert.are.equal("content_policy_violation", r.json.detail[1].type)
    assert.are.equal("https://docs.fal.ai/errors/#content_policy_violation", r.json.detail[1].url)
    assert.is_nil(r.headers["x-fal-retryable"])
  end)

  it("fal_retryable_header sends X-Fal-Retryable with the value asked for", function()
    for _, v in ipairs({ "false", "true" }) do
      emu:reset{ fal_retryable_header = v }
      emu:next{ polls = 1, outcome = "failed" }
      emu:next{ polls = 1, outcome = "moderated" }
      for _ = 1, 2 do
        local j = submit().json
        call("GET", j.status_url)
        local r = call("GET", j.response_url)
        assert.is_true(r.status == 400 or r.status == 422)
        assert.are.equal(v, r.headers["x-fal-retryable"])
      end
      emu:next{ polls = 1 }
      local j = submit().json
      call("GET", j.status_url)
      local ok = call("GET", j.response_url)
      assert.are.equal(200, ok.status)
      assert.is_nil(ok.headers["x-fal-retryable"])
    end
  end)
end)

describe("emulator fal start timeout (X-Fal-Request-Timeout)", function()
  local function completed(j)
    return emu:wait_for(function()
      local s = call("GET", j.status_url)
      return s.json.status == "COMPLETED" and s
    end, 30)
  end

  it("a request still queued when its start timeout passes ends; its result is a 504 of type user", function()
    emu:next{ polls = 100000 }
    local r = submit{ ["X-Fal-Request-Timeout"] = "1" }
    assert.are.equal(200, r.status, r.body)
    local j = r.json
    local first = call("GET", j.status_url)
    assert.are.equal("IN_QUEUE", first.json.status)
    local s = completed(j)
    assert.truthy(s, "the request never completed")
    assert.are.equal(200, s.status)
    assert.are.equal("request_timeout", s.json.error_type)
    assert.are.equal("Request timed out", s.json.error)
    assert.are.same({}, s.json.logs)
    local res = call("GET", j.response_url)
    assert.are.equal(504, res.status)
    assert.are.equal("user", res.headers["x-fal-request-timeout-type"])
    assert.are.equal("request_timeout", res.headers["x-fal-error-type"])
    assert.matches("^application/json", res.headers["content-type"])
    assert.are.same({ detail = "Request timed out", error_type = "request_timeout" }, res.json)
    local t = emu:task(j.request_id).task
    assert.are.equal("timeout", t.stage)
    assert.are.equal(1, t.start_timeout)
    local c = call("PUT", j.cancel_url)
    assert.are.equal(400, c.status)
    assert.are.equal("ALREADY_COMPLETED", c.json.status)
  end)

  it("ends at its deadline even when nobody polls", function()
    emu:next{ polls = 100000 }
    local id = submit{ ["X-Fal-Request-Timeout"] = "0.2" }.json.request_id
    local stage = emu:wait_for(function()
      local st = emu:task(id).task.stage
      return st == "timeout" and st
    end, 30)
    assert.are.equal("timeout", stage)
  end)

  it("does not touch a request that started before its deadline", function()
    emu:next{ progress = "time", seconds = 1 } -- runs from 0.3 s, done at 1 s
    local j = submit{ ["X-Fal-Request-Timeout"] = "0.6" }.json
    local s = completed(j)
    assert.truthy(s)
    assert.is_nil(s.json.error_type)
    assert.are.equal(200, call("GET", j.response_url).status)
  end)

  it("fal_start_timeout_type = startup_timeout names the other error type", function()
    emu:config{ fal_start_timeout_type = "startup_timeout" }
    emu:next{ polls = 100000 }
    local j = submit{ ["X-Fal-Request-Timeout"] = "0.2" }.json
    assert.are.equal("startup_timeout", completed(j).json.error_type)
    local res = call("GET", j.response_url)
    assert.are.equal(504, res.status)
    assert.are.equal("user", res.headers["x-fal-request-timeout-type"])
    assert.are.equal("startup_timeout", res.json.error_type)
  end)

  -- { header value, accepted } with the default minimum (above 0.1 s)
  local rows = { { "0.1", false }, { "0", false }, { "-5", false }, { "soon", false }, { "0.15", true },
    { "30", true } }
  for _, row in ipairs(rows) do
    it(string.format("X-Fal-Request-Timeout: %s -> %s", row[1], row[2] and "accepted" or "400 bad_request"),
      function()
      local r = submit{ ["X-Fal-Request-Timeout"] = row[1] }
      if row[2] then
        assert.are.equal(200, r.status, r.body)
        assert.are.equal(tonumber(row[1]), emu:task(r.json.request_id).task.start_timeout)
      else
        assert.are.equal(400, r.status)
        assert.are.equal("bad_request", r.json.error_type)
        assert.are.equal("bad_request", r.headers["x-fal-error-type"])
        assert.matches("X%-Fal%-Request%-Timeout", r.json.detail)
        assert.are.equal(0, task_count())
      end
    end)
  end

  it("fal_min_start_timeout = 1 refuses 1 s and below, as the official SDKs do", function()
    emu:config{ fal_min_start_timeout = 1 }
    assert.are.equal(400, submit{ ["X-Fal-Request-Timeout"] = "1" }.status)
    assert.are.equal(200, submit{ ["X-Fal-Request-Timeout"] = "1.5" }.status)
  end)
end)

describe("emulator fal queue priority and runner hint", function()
  it("a low-priority request waits behind every normal one; queue_position counts them", function()
    emu:next{ polls = 3 }
    emu:next{ polls = 3 }
    emu:next{ polls = 3 }
    local a = submit({ ["X-Fal-Queue-Priority"] = "normal" }).json
    local low = submit({ ["X-Fal-Queue-Priority"] = "low" }).json
    local c = submit().json
    assert.are.equal(2, low.queue_position) -- its own 1 + the normal request queued then
    for _ = 1, 5 do -- its own 1 + the 2 normal requests queued now
      local s = call("GET", low.status_url).json
      assert.are.equal("IN_QUEUE", s.status)
      assert.are.equal(3, s.queue_position)
    end
    for _ = 1, 3 do call("GET", a.status_url) end
    assert.are.equal("COMPLETED", call("GET", a.status_url).json.status)
    -- One normal request is still queued: the low one stays where it is.
    assert.are.equal(2, call("GET", low.status_url).json.queue_position)
    local seen = {}
    for i = 1, 3 do seen[i] = call("GET", c.status_url).json.status end
    assert.are.same({ "IN_QUEUE", "IN_PROGRESS", "COMPLETED" }, seen)
    -- Now it moves, counting its own polls from here.
    seen = {}
    for i = 1, 3 do seen[i] = call("GET", low.status_url).json.status end
    assert.are.same({ "IN_QUEUE", "IN_PROGRESS", "COMPLETED" }, seen)
    assert.are.equal(200, call("GET", low.response_url).status)
  end)

  it("a low-priority request nobody polls finishes once the normal ones have left the queue", function()
    emu:next{ progress = "time", seconds = 2 }   -- leaves the queue at 0.6 s
    emu:next{ progress = "time", seconds = 0.2 } -- would be done at 0.2 s, but waits
    local a = submit({ ["X-Fal-Queue-Priority"] = "normal" }).json
    local low = submit({ ["X-Fal-Queue-Priority"] = "low" }).json
    local stage = emu:wait_for(function()
      local st = emu:task(low.request_id).task.stage
      return st == "succeeded" and st
    end, 30)
    assert.are.equal("succeeded", stage)
    local ta = emu:task(a.request_id).task
    assert.truthy(ta.stage == "running" or ta.stage == "succeeded", ta.stage)
  end)

  it("records priority, start timeout and runner hint in the control API's task listing", function()
    submit{ ["X-Fal-Queue-Priority"] = "low", ["X-Fal-Runner-Hint"] = "runner-7",
      ["X-Fal-Request-Timeout"] = "30" }
    submit()
    local list = emu:control("GET", "/_emulator/tasks").tasks
    assert.are.equal(2, #list)
    local hinted
    for _, t in ipairs(list) do
      if t.runner_hint then hinted = t end
    end
    assert.truthy(hinted)
    assert.are.equal("runner-7", hinted.runner_hint)
    assert.are.equal("low", hinted.priority)
    assert.are.equal(30, hinted.start_timeout)
    -- ?input=0 leaves out what each task was sent (its image may be a data: URI).
    assert.truthy(list[1].input)
    for _, t in ipairs(emu:control("GET", "/_emulator/tasks?input=0").tasks) do
      assert.is_nil(t.input)
      assert.truthy(t.id)
    end
  end)
end)

-- A result that cannot be loaded is not a failed generation: each of these is injected on the
-- result path alone (the status path still answers), and the next read loads the video.
describe("emulator fal result faults", function()
  -- { name, fault, check(item) }
  local rows = {
    { "503 request error", { kind = "status", status = 503 }, function(r)
      assert.are.equal(503, r.status)
      assert.are.equal("runner_scheduling_failure", r.json.error_type)
      assert.are.equal("runner_scheduling_failure", r.headers["x-fal-error-type"])
    end },
    { "500 request error", { kind = "status", status = 500 }, function(r)
      assert.are.equal(500, r.status)
      assert.are.equal("internal_server_error", r.json.error_type)
      assert.is_nil(r.headers["x-fal-retryable"])
    end },
    { "HTML 502 gateway page", { kind = "html_502" }, function(r)
      assert.are.equal(502, r.status)
      assert.matches("^text/html", r.headers["content-type"])
      assert.is_nil(r.json)
    end },
    { "HTML 504 gateway page", { kind = "html_502", status = 504 }, function(r)
      assert.are.equal(504, r.status)
      assert.matches("^text/html", r.headers["content-type"])
    end },
    { "truncated 200", { kind = "truncate" }, function(r)
      assert.is_false(r.ok)
      assert.are.equal("reset", r.error)
    end },
    { "non-JSON 200", { kind = "malformed_json" }, function(r)
      assert.are.equal(200, r.status)
      assert.is_nil(r.json)
    end },
    { "HTML 200", { kind = "status", status = 200, body = "<html><body>captive portal</body></html>",
      headers = { ["Content-Type"] = "text/html" } }, function(r)
      assert.are.equal(200, r.status)
      assert.matches("^text/html", r.headers["content-type"])
      assert.is_nil(r.json)
    end },
  }
  for _, row in ipairs(rows) do
    it(row[1] .. " on the result, then the video", function()
      emu:next{ polls = 1 }
      local j = submit().json
      assert.are.equal("COMPLETED", call("GET", j.status_url).json.status)
      local f = { method = "GET", match = RESULT_PATH, times = 1 }
      for k, v in pairs(row[2]) do f[k] = v end
      emu:fault(f)
      assert.are.equal("COMPLETED", call("GET", j.status_url).json.status) -- not the result path
      row[3](call("GET", j.response_url))
      local ok = call("GET", j.response_url)
      assert.are.equal(200, ok.status)
      assert.is_string(ok.json.video.url)
      assert.are.equal(1, emu:control("GET", "/_emulator/faults").faults[1].fired)
    end)
  end

  it("keeps failing for as long as asked (times = -1) until the faults are cleared", function()
    emu:next{ polls = 1 }
    local j = submit().json
    call("GET", j.status_url)
    emu:fault{ method = "GET", match = RESULT_PATH, kind = "status", status = 503, times = -1 }
    for _ = 1, 4 do assert.are.equal(503, call("GET", j.response_url).status) end
    emu:control("DELETE", "/_emulator/faults")
    assert.are.equal(200, call("GET", j.response_url).status)
  end)
end)
