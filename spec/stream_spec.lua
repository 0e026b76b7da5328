-- Push instead of poll (issue 10): the engine's stream transfers (request{ stream = true },
-- engine:take, arrival notices), the server-sent events parser, and fal tasks followed on
-- their status stream against the real emulator over loopback, with the fallbacks to polling
-- when the stream is refused, cut or silent, and the bound on open streams.
local core = require("vidu.core")
local sse = require("vidu.sse")
local client_mod = require("vidu.client")
local scheduler = require("vidu.scheduler")
local emulator = require("support.emulator")
local util = require("support.util")

local PNG = util.read_file("spec/fixtures/png_33x17.png")
local STATUS_PATH = "^/fal%-ai/vidu/requests/[^/]+/status$"
local STREAM_PATH = "^/fal%-ai/vidu/requests/[^/]+/status/stream$"
local RESULT_PATH = "^/fal%-ai/vidu/requests/[^/]+$"
local SUBMIT = "/fal-ai/vidu/q1/image-to-video"

describe("vidu.sse parser", function()
  -- One row per case: the feeds, then the data of the events they complete, in order.
  local cases = {
    { "one event", { "data: {\"a\":1}\n\n" }, { "{\"a\":1}" } },
    { "comments ignored", { ": keep-alive\n\n: hi\ndata: x\n\n" }, { "x" } },
    { "multi-line data joined with LF", { "data: a\ndata: b\ndata:c\n\n" }, { "a\nb\nc" } },
    { "split anywhere", { "da", "ta: he", "llo\n", "\n", "data: 2\n\n" }, { "hello", "2" } },
    { "CRLF and CR line ends", { "data: a\r\n\r\ndata: b\r\rdata: c\r", "\n\r\n" },
      { "a", "b", "c" } },
    { "CRLF split across feeds", { "data: a\r", "\n\r", "\n" }, { "a" } },
    { "no event without data", { "event: ping\n\nid: 3\n\n" }, {} },
    { "no dispatch before the blank line", { "data: pending\n" }, {} },
    { "a field without a colon is empty", { "data\n\n" }, { "" } },
    { "only one space after the colon is dropped", { "data:  two\n\n" }, { " two" } },
    { "a byte order mark opens the stream", { "\239\187", "\191data: bom\n\n" }, { "bom" } },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local p = sse.parser()
      local got = {}
      for _, chunk in ipairs(c[2]) do
        for _, ev in ipairs(assert(p:feed(chunk))) do got[#got + 1] = ev.data end
      end
      assert.are.same(c[3], got)
    end)
  end

  it("keeps the event type and id", function()
    local evs = assert(sse.parser():feed("event: status\nid: 7\ndata: d\n\n"))
    assert.are.same({ { data = "d", event = "status", id = "7" } }, evs)
  end)

  it("refuses an event that grows past its bound, data or a line without an end", function()
    local p = sse.parser(64)
    assert.are.same({}, assert(p:feed("data: " .. ("x"):rep(40) .. "\n")))
    local ok, err = p:feed("data: " .. ("y"):rep(40) .. "\n")
    assert.is_nil(ok)
    assert.matches("exceeds 64 bytes", err)
    local q = sse.parser(64)
    assert.is_nil((q:feed(("z"):rep(65))))
    -- Complete events do not count against it, however many arrive.
    local r = sse.parser(64)
    for _ = 1, 100 do assert.are.equal(1, #assert(r:feed("data: " .. ("w"):rep(40) .. "\n\n"))) end
  end)
end)

describe("stream transfers", function()
  local emu
  setup(function() emu = emulator.start{ seed = 21, args = { "--no-ffmpeg" } } end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function()
    emu:reset{ progress = "polls", polls = 4, stream_interval = 0.05 }
  end)

  local function fal_task()
    local j = emu:call("POST", SUBMIT, { auth = "Key k", json = { prompt = "p",
      image_url = "data:image/png;base64," .. core.b64encode(PNG) } }).json
    return j
  end

  -- Drives an engine until the transfer `id` finishes; returns its notices, the bytes
  -- taken after each, and the finished result.
  local function drive(e, id, take)
    local notices, taken = {}, {}
    local deadline = core.now() + 20
    while core.now() < deadline do
      for _, item in ipairs(e:wait(50)) do
        assert.are.equal(id, item.id)
        if item.ok == nil then
          notices[#notices + 1] = item
          if take then taken[#taken + 1] = e:take(id) end
        else
          return notices, taken, item
        end
      end
    end
    error("the stream did not end")
  end

  it("reports arrivals, hands the bytes over with take, and the rest with the result", function()
    local j = fal_task()
    local e = core.engine{}
    local id = e:request{ url = j.status_url .. "/stream?logs=1", stream = true,
      headers = { Authorization = "Key k" } }
    local notices, taken, item = drive(e, id, true)
    assert.is_true(#notices >= 1)
    assert.are.equal(200, notices[1].status)
    assert.are.equal("text/event-stream", notices[1].headers["content-type"])
    for i = 2, #notices do assert.is_nil(notices[i].headers) end
    for i = 1, #notices do assert.is_true(notices[i].arrived > 0) end
    assert.is_true(item.ok)
    local all = table.concat(taken) .. item.body
    local p = sse.parser()
    local evs = assert(p:feed(all))
    assert.is_true(#evs >= 2)
    assert.matches('"status":"COMPLETED"', evs[#evs].data)
    assert.matches('"status":"IN_QUEUE"', evs[1].data)
    assert.is_nil(e:take(id))
    assert.is_nil(e:take(12345))
    e:close()
  end)

  it("reports arrivals on a watched engine too (socket interface, driven by wait)", function()
    local j = fal_task()
    local e = core.engine{}
    e:watch()
    local id = e:request{ url = j.status_url .. "/stream?logs=1", stream = true,
      headers = { Authorization = "Key k" } }
    local notices, taken, item = drive(e, id, true)
    assert.is_true(#notices >= 1)
    assert.are.equal(200, notices[1].status)
    assert.is_true(item.ok)
    local evs = assert(sse.parser():feed(table.concat(taken) .. item.body))
    assert.matches('"status":"COMPLETED"', evs[#evs].data)
    e:close()
  end)

  it("step() alone drives a watched engine nobody else drives", function()
    local e = core.engine{}
    e:watch()
    local id = e:request{ url = emu.url .. "/_emulator/health" }
    local item
    local deadline = core.now() + 20
    while not item and core.now() < deadline do
      for _, it_ in ipairs(e:step()) do item = it_ end
      if not item then util.luv().sleep(2) end
    end
    assert.truthy(item, "step() never finished the transfer")
    assert.are.equal(id, item.id)
    assert.is_true(item.ok)
    assert.are.equal(200, item.status)
    e:close()
  end)

  it("keeps what is not taken for the result's body", function()
    local j = fal_task()
    local e = core.engine{}
    local id = e:request{ url = j.status_url .. "/stream", stream = true,
      headers = { Authorization = "Key k" } }
    local _, _, item = drive(e, id, false)
    assert.is_true(item.ok)
    assert.matches('"status":"COMPLETED"', item.body)
    assert.are.equal(#item.body, item.bytes)
    e:close()
  end)

  it("fails too_large when the bytes waiting pass max_response", function()
    local j = fal_task()
    local e = core.engine{}
    local id = e:request{ url = j.status_url .. "/stream", stream = true, max_response = 100,
      headers = { Authorization = "Key k" } }
    local _, _, item = drive(e, id, false)
    assert.is_false(item.ok)
    assert.are.equal("too_large", item.error)
    e:close()
  end)

  it("refuses stream with output, and a non-boolean stream", function()
    local e = core.engine{}
    assert.has_error(function()
      e:request{ url = emu.url, stream = true, output = "/tmp/x" }
    end, "stream and output are mutually exclusive")
    assert.has_error(function() e:request{ url = emu.url, stream = 1 } end,
      "stream must be a boolean (got number)")
    e:close()
  end)

  it("a canceled stream is reported once, and closing an engine mid-stream frees it", function()
    local j = fal_task()
    local e = core.engine{}
    local id = e:request{ url = j.status_url .. "/stream", stream = true,
      headers = { Authorization = "Key k" } }
    local first
    while not first do
      for _, item in ipairs(e:wait(50)) do first = item end
    end
    assert.is_nil(first.ok)
    assert.is_true(e:cancel(id))
    local items = e:step()
    assert.are.equal(1, #items)
    assert.are.equal("canceled", items[1].error)
    -- A second stream left running when the engine closes.
    e:request{ url = j.status_url .. "/stream", stream = true,
      headers = { Authorization = "Key k" } }
    e:wait(100)
    e:close()
  end)
end)

describe("stream transfers with skip_repeats", function()
  local testserver = require("support.testserver_process")
  local url_mod = require("vidu.url")
  local cjson = require("cjson")
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() if srv then srv:stop() end end)

  -- Streams `chunks` (each written on its own, 30 ms apart) through an engine; returns the
  -- bytes each arrival handed over, and the finished result.
  local function run(chunks, skip)
    local e = core.engine{}
    local id = e:request{ url = srv.url .. "/sse?every=30&chunks=" .. url_mod.encode(cjson.encode(chunks)),
      stream = true, skip_repeats = skip }
    local taken, deadline = {}, core.now() + 20
    while core.now() < deadline do
      for _, item in ipairs(e:wait(50)) do
        if item.ok == nil then
          taken[#taken + 1] = e:take(id)
        else
          e:close()
          if item.body ~= "" then taken[#taken + 1] = item.body end
          return taken, item
        end
      end
    end
    error("the stream did not end")
  end

  local A, B = "data: {\"status\":\"IN_PROGRESS\"}\n\n", "data: {\"status\":\"COMPLETED\"}\n\n"

  it("drops a chunk that repeats the last whole events; the bytes still count", function()
    local chunks = { A, A, A, A, A, B, B }
    local taken, item = run(chunks, true)
    assert.is_true(item.ok)
    assert.are.same({ A, B }, taken)
    assert.are.equal(5, item.repeats)
    assert.are.equal(#table.concat(chunks), item.bytes)
    -- Without it every chunk is handed over, and the result does not count repeats.
    local all, plain = run(chunks, false)
    assert.are.equal(table.concat(chunks), table.concat(all))
    assert.is_nil(plain.repeats)
  end)

  it("keeps a repeated chunk that does not end an event, and what follows it", function()
    -- "data: x" twice is one event with two data lines, not a repeat; a repeat of an event
    -- whose end came in the chunk before is not either (it starts mid-event).
    local chunks = { "data: x\n", "data: x\n", "\n", "data: y", "\n\n", "\n\n", A, A }
    local taken, item = run(chunks, true)
    assert.is_true(item.ok)
    assert.are.equal(1, item.repeats)
    local evs = assert(sse.parser():feed(table.concat(taken)))
    local datas = {}
    for i = 1, #evs do datas[i] = evs[i].data end
    assert.are.same({ "x\nx", "y", '{"status":"IN_PROGRESS"}' }, datas)
    -- An event typed by the chunk before: its first copy began mid-event, so only the
    -- third copy (after a whole second one) is dropped.
    local typed = run({ "event: x\n", A, A, A }, true)
    assert.are.same({ "event: x\n", A, A }, typed)
  end)

  it("a CRLF-framed repeat is dropped too; a different event never is", function()
    local C = "data: 1\r\n\r\n"
    local taken, item = run({ C, C, "data: 2\r\n\r\n", C }, true)
    assert.are.same({ C, "data: 2\r\n\r\n", C }, taken)
    assert.are.equal(1, item.repeats)
  end)

  it("is refused without stream = true, and must be a boolean", function()
    local e = core.engine{}
    assert.has_error(function() e:request{ url = srv.url, skip_repeats = true } end,
      "skip_repeats needs stream = true")
    assert.has_error(function() e:request{ url = srv.url, stream = true, skip_repeats = "yes" } end,
      "skip_repeats must be a boolean (got string)")
    e:close()
  end)
end)

describe("fal tasks on the status stream", function()
  local emu, sched
  setup(function() emu = emulator.start{ seed = 22, args = { "--no-ffmpeg" } } end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function()
    emu:reset{ progress = "polls", polls = 4, stream_interval = 0.05, log_limit = 100000 }
    sched = scheduler.new()
  end)

  local function client(opts)
    local o = { api_key = "k", base_url = emu.url, scheduler = sched,
      poll = { first = 0.1, max = 0.3, factor = 1.5 } }
    for k, v in pairs(opts or {}) do o[k] = v end
    return client_mod.new("fal", o)
  end

  local function count(match, method)
    return #emu:requests{ method = method or "GET", match = match }
  end

  local function submit(c)
    return assert(c:submit{ image = { data = PNG }, prompt = "p", upload = false })
  end

  it("finishes through the stream: submit, one stream, one result, no status poll", function()
    local c = client()
    local updates = {}
    local task = submit(c)
    local ok, err = task:wait{ timeout = 20,
      on_update = function(t) updates[#updates + 1] = t.status end }
    assert.is_true(ok, tostring(err))
    assert.are.equal("succeeded", task.status)
    assert.matches("^http", task.video_url)
    assert.are.equal(1, count(STREAM_PATH))
    assert.are.equal(1, count(RESULT_PATH))
    assert.are.equal(0, count(STATUS_PATH))
    assert.are.equal(1, #emu:requests{ method = "POST", path = SUBMIT })
    assert.are.equal(3, #emu:requests{})
    assert.are.equal(3, c:counters().requests)
    assert.are.equal("succeeded", updates[#updates])
    assert.is_true(#updates >= 2)
    -- The stream asked for logs, with the key.
    local s = emu:requests{ match = STREAM_PATH }[1]
    assert.are.equal("logs=1", s.query)
    assert.are.equal("Key k", s.headers["authorization"])
    assert.are.equal(0, c:counters().streams)
  end)

  describe("with a short idle limit", function()
    local fal = require("vidu.providers.fal")
    local saved
    before_each(function() saved = fal.stream_idle; fal.stream_idle = 0.4 end)
    after_each(function() fal.stream_idle = saved end)

    it("a stream that only repeats its status (dropped by the engine) is not silent", function()
      -- 2 s of the same IN_PROGRESS every 50 ms: after the first, the engine drops them all,
      -- so no event reaches the task for 5 idle limits; the bytes still arrive.
      emu:config{ progress = "time", seconds = 2 }
      local c = client()
      local task = submit(c)
      local ok, err = sched:run(function() return task:wait{ timeout = 20 } end)
      assert.is_true(ok, tostring(err))
      assert.are.equal(1, count(STREAM_PATH))
      assert.are.equal(0, count(STATUS_PATH))
    end)

    it("a stream that sends nothing is given up for polling, which finishes the task", function()
      emu:config{ fal_stream = "silent", progress = "time", seconds = 1 }
      local c = client()
      local task = submit(c)
      local ok, err = sched:run(function() return task:wait{ timeout = 20 } end)
      assert.is_true(ok, tostring(err))
      assert.is_true(count(STREAM_PATH) >= 1)
      assert.is_true(count(STATUS_PATH) >= 1)
    end)
  end)

  it("a long-followed task keeps no stale entry per event on its callback event", function()
    -- Many events (the status repeated every 10 ms for 30 looks), each read parking on the
    -- task's wake event beside the transfer: the event's list must not grow with them.
    emu:config{ polls = 30, stream_interval = 0.01 }
    local c = client()
    local most, done = 0, false
    local ok = sched:run(function()
      local task = submit(c)
      sched:spawn(function()
        while not done do
          local ev = task._wake
          -- (the list holds a waiter as two entries: its coroutine and token)
          if ev and ev.waiters and #ev.waiters / 2 > most then most = #ev.waiters / 2 end
          sched:sleep(0.005)
        end
      end)
      local r = task:wait{ timeout = 20 }
      done = true
      return r
    end)
    assert.is_true(ok)
    assert.are.equal(1, count(STREAM_PATH))
    assert.is_true(most <= 1, "waiters on the wake event: " .. most)
  end)

  it("stream = false polls as before", function()
    local c = client{ stream = false }
    local task = submit(c)
    assert.is_true((task:wait{ timeout = 20 }))
    assert.are.equal(0, count(STREAM_PATH))
    assert.is_true(count(STATUS_PATH) >= 1)
  end)

  for _, mode in ipairs({ "refuse", "json" }) do
    it("a refused stream (" .. mode .. ") leaves the task to polling, which finishes it", function()
      emu:config{ fal_stream = mode }
      local c = client()
      local task = submit(c)
      local ok, err = task:wait{ timeout = 20 }
      assert.is_true(ok, tostring(err))
      assert.are.equal("succeeded", task.status)
      assert.are.equal(1, count(STREAM_PATH))
      assert.is_true(count(STATUS_PATH) >= 1)
      assert.are.equal(1, count(RESULT_PATH))
    end)
  end

  it("a stream cut mid-way leaves the task to polling, which finishes it", function()
    emu:config{ fal_stream_cut_after = 1, polls = 8 }
    local c = client()
    local task = submit(c)
    local ok, err = task:wait{ timeout = 30 }
    assert.is_true(ok, tostring(err))
    assert.are.equal("succeeded", task.status)
    -- Followed again after each break, at most 3 times; polls did the rest.
    local streams = count(STREAM_PATH)
    assert.is_true(streams >= 1 and streams <= 3, "streams " .. streams)
    assert.is_true(count(STATUS_PATH) >= 1)
    assert.are.equal(1, count(RESULT_PATH))
  end)

  it("holds the bound on open streams; the tasks beyond it poll", function()
    emu:config{ polls = 10 }
    local c = client{ max_streams = 2 }
    local results, nfailed = sched:run(function()
      local tasks = {}
      for i = 1, 6 do tasks[i] = submit(c) end
      return sched:gather(tasks, { timeout = 30 })
    end)
    assert.are.equal(0, nfailed)
    assert.are.equal(6, #results)
    assert.are.equal(2, c:counters().streams_peak)
    assert.are.equal(0, c:counters().streams)
    assert.is_true(count(STATUS_PATH) >= 1)
    assert.are.equal(6, count(RESULT_PATH))
  end)

  it("gives the stream's place back when on_update raises while the task is followed", function()
    emu:config{ polls = 10 }
    local c = client{ max_streams = 1 }
    local ok, err, left = sched:run(function()
      local task = submit(c)
      local wok, werr = sched:pcall(task.wait, task, { timeout = 30,
        on_update = function() error("the caller's on_update failed", 0) end })
      -- The wait's deadline does not outlive it on this coroutine's later requests.
      return wok, werr, c:_deadline()
    end)
    assert.is_false(ok)
    assert.are.equal("the caller's on_update failed", err)
    assert.is_nil(left)
    assert.are.equal(1, c:counters().streams_peak)
    assert.are.equal(0, c:counters().streams)
    -- The place is free: the next task follows its stream.
    local done = sched:run(function() return submit(c):wait{ timeout = 30 } end)
    assert.is_true(done)
    assert.are.equal(0, c:counters().streams)
  end)

  it("open streams take neither the request slots nor libcurl's connections that submits need", function()
    -- Streams that never end, more of them than the engine's own per-host bound and than
    -- the client's request slots; a submit must still go out at once.
    emu:config{ fal_stream = "silent", polls = 1000 }
    sched = scheduler.new{ engine_options = { max_host_connections = 2 } }
    local c = client{ max_connections = 1, max_streams = 3 }
    local submitted, err, seen, open_then = sched:run(function()
      local tasks = {}
      for i = 1, 3 do tasks[i] = submit(c) end
      for i = 1, 3 do sched:spawn(function() tasks[i]:wait{ timeout = 3 } end) end
      -- Until the emulator has seen the 3 streams (or 2.5 s, within the waits' timeout:
      -- libcurl would hold the third back if streams could fill its bound).
      local give_up = sched:time() + 2.5
      while count(STREAM_PATH) < 3 and sched:time() < give_up do sched:sleep(0.02) end
      local t, e = c:submit{ image = { data = PNG }, prompt = "p", upload = false }
      return t, e, count(STREAM_PATH), c:counters().streams
    end)
    assert.truthy(submitted, tostring(err))
    assert.are.equal(3, seen)
    assert.are.equal(3, open_then)
    assert.are.equal(4, #emu:requests{ method = "POST", path = SUBMIT })
    assert.are.equal(3, count(STREAM_PATH))
    assert.are.equal(0, c:counters().streams)
  end)

  it("reserves connections for live clients only: a dropped client gives its room back", function()
    local s = scheduler.new()
    s:engine()
    for _ = 1, 20 do client_mod.new("fal", { api_key = "k", scheduler = s, max_streams = 100 }) end
    collectgarbage()
    collectgarbage()
    local keep = client_mod.new("fal", { api_key = "k", scheduler = s, max_streams = 300 })
    -- 300 streams + 32 request slots of the one live client.
    assert.are.equal(332, s:_backstop())
    assert.are.equal(332, s.applied)
    assert.truthy(keep)
  end)

  it("max_streams = 0 never streams", function()
    local c = client{ max_streams = 0 }
    local task = submit(c)
    assert.is_true((task:wait{ timeout = 20 }))
    assert.are.equal(0, count(STREAM_PATH))
  end)

  it("keeps the wait's deadline with a stream that sends nothing", function()
    emu:config{ fal_stream = "silent", polls = 1000 }
    local c = client()
    local task = submit(c)
    local t0 = sched:time()
    local ok, err = task:wait{ timeout = 1 }
    local took = sched:time() - t0
    assert.is_nil(ok)
    assert.are.equal("timeout", err.kind)
    assert.are.equal(task.id, err.task_id)
    assert.are.equal(1, count(STREAM_PATH))
    -- Within the timeout plus about a second (the last look's grace).
    assert.is_true(took < 2.5, "took " .. took)
    assert.are.equal(0, c:counters().streams)
  end)

  it("a callback's observation ends a wait that follows the stream", function()
    emu:config{ fal_stream = "silent", polls = 1000 }
    local c = client()
    local task = submit(c)
    local ok, err = sched:run(function()
      sched:spawn(function()
        sched:sleep(0.2)
        c:deliver({ status = "succeeded", video_url = "http://example.invalid/v.mp4" }, task.id)
      end)
      return task:wait{ timeout = 20 }
    end)
    assert.is_true(ok, tostring(err))
    assert.are.equal("http://example.invalid/v.mp4", task.video_url)
    assert.are.equal(0, count(RESULT_PATH))
    assert.are.equal(0, c:counters().streams)
  end)

  it("refuses bad stream options before anything is sent", function()
    assert.has_error(function() client{ max_streams = -1 } end,
      "vidu.client: max_streams must be a whole number >= 0")
    assert.has_error(function() client{ max_streams = 1.5 } end,
      "vidu.client: max_streams must be a whole number >= 0")
    assert.has_error(function() client{ stream = "yes" } end,
      "vidu.client: option stream must be a boolean, got string")
    assert.are.equal(0, #emu:requests{})
  end)
end)
