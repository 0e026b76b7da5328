-- client:request against a scripted loopback server (a child process on the emulator's
-- generic HTTP server): retries, Retry-After, the submit-safety rule, per-host bounds.
local core = require("vidu.core")
local json = require("vidu.json")
local client_mod = require("vidu.client")
local scheduler = require("vidu.scheduler")
local scripted = require("support.scripted")

local KEY = "sk-test-0123456789-secret"

-- A minimal driver: enough for client:request (the runtime's part of the contract).
local function test_driver(url)
  return {
    name = "test", env_key = "VIDU_TEST_KEY", default_base_url = url,
    auth_header = function(key) return "Bearer " .. key end,
    parse_error = function(resp)
      local j = type(resp.json) == "table" and resp.json or {}
      return { code = j.code, message = j.message }
    end,
  }
end

describe("client:request", function()
  local srv, client

  setup(function() srv = scripted.start() end)
  teardown(function() if srv then srv:stop() end end)

  before_each(function()
    srv:reset()
    client = client_mod.new(test_driver(srv.url), {
      api_key = KEY, scheduler = scheduler.new(),
      retry = { base = 0.01, cap = 0.05 }, timeout = 5,
    })
  end)

  it("GETs JSON with the auth header and decodes it", function()
    srv:script("a", { { status = 200, json = { hello = "world" } } })
    local resp, err = client:request{ path = "/s/a" }
    assert.is_nil(err)
    assert.are.equal(200, resp.status)
    assert.are.same({ hello = "world" }, resp.json)
    local log = srv:log("a")
    assert.are.equal(1, #log)
    assert.are.equal("Bearer " .. KEY, log[1].headers.authorization)
  end)

  it("sends no Authorization header when auth = false", function()
    srv:script("a", { { status = 200, body = "ok" } })
    assert(client:request{ path = "/s/a", auth = false })
    assert.is_nil(srv:log("a")[1].headers.authorization)
  end)

  it("POSTs a JSON body", function()
    srv:script("p", { { status = 200, json = { id = "t1" } } })
    local resp = assert(client:request{ method = "POST", path = "/s/p",
      json = { a = 1, list = json.array() } })
    assert.are.equal("t1", resp.json.id)
    local req = srv:log("p")[1]
    assert.are.equal('{"a":1,"list":[]}', req.body)
    assert.are.equal("application/json", req.headers["content-type"])
  end)

  it("retries a GET on 503 then succeeds", function()
    srv:script("r", { { status = 503, json = { message = "busy" } }, { status = 503 },
      { status = 200, json = { ok = true } } })
    local resp, err = client:request{ path = "/s/r" }
    assert.is_nil(err)
    assert.is_true(resp.json.ok)
    assert.are.equal(3, #srv:log("r"))
  end)

  it("gives up after the attempts and returns the last HTTP error", function()
    srv:script("r", { { status = 502, json = { message = "bad gateway", code = "BG" } } })
    local resp, err = client:request{ path = "/s/r", attempts = 3 }
    assert.is_nil(resp)
    assert.are.equal("http", err.kind)
    assert.are.equal(502, err.status)
    assert.are.equal("BG", err.code)
    assert.is_true(err.retryable)
    assert.are.equal(3, #srv:log("r"))
  end)

  it("does not retry a 404 and maps 401 and 429 to their kinds", function()
    srv:script("nf", { { status = 404, json = { message = "no such task" } } })
    local _, err = client:request{ path = "/s/nf" }
    assert.are.equal("http", err.kind)
    assert.are.equal(404, err.status)
    assert.are.equal("no such task", err.message)
    assert.are.equal(1, #srv:log("nf"))

    srv:script("auth", { { status = 401, json = { message = "bad key " .. KEY } } })
    _, err = client:request{ path = "/s/auth" }
    assert.are.equal("auth", err.kind)
    assert.is_nil(tostring(err):find(KEY, 1, true))
    assert.is_nil(err.message:find(KEY, 1, true))
  end)

  it("honours Retry-After: the retry comes no earlier than asked", function()
    srv:script("ra", { { status = 429, headers = { ["Retry-After"] = "1" } },
      { status = 200, json = { ok = true } } })
    local resp, err = client:request{ path = "/s/ra" }
    assert.is_nil(err)
    assert.is_true(resp.json.ok)
    local log = srv:log("ra")
    assert.are.equal(2, #log)
    -- A lower bound on ordering from the server's own clock, not a timing benchmark.
    assert.is_true(log[2].time - log[1].time >= 1.0, "gap " .. (log[2].time - log[1].time))
  end)

  it("waits the cap when Retry-After is longer, then tries again", function()
    local c = client_mod.new(test_driver(srv.url), {
      api_key = KEY, scheduler = scheduler.new(), retry = { max_retry_after = 0.3 },
    })
    srv:script("rl", { { status = 429, headers = { ["Retry-After"] = "100" },
      json = { message = "slow down" } }, { status = 200, json = { ok = true } } })
    local resp = assert(c:request{ path = "/s/rl" })
    assert.is_true(resp.json.ok)
    local log = srv:log("rl")
    assert.are.equal(2, #log)
    assert.is_true(log[2].time - log[1].time >= 0.3)
  end)

  it("gives up at once when Retry-After passes the request's deadline", function()
    local s = scheduler.new()
    local c = client_mod.new(test_driver(srv.url), {
      api_key = KEY, scheduler = s, retry = { max_retry_after = 5 },
    })
    srv:script("rl", { { status = 429, headers = { ["Retry-After"] = "100" },
      json = { message = "slow down" } } })
    local t0 = core.now()
    local _, err = c:request{ path = "/s/rl", deadline = s:time() + 2 }
    assert.is_true(core.now() - t0 < 2)
    assert.are.equal("timeout", err.kind)
    assert.are.equal(429, err.status)
    assert.are.equal("rate_limited", err.cause.kind)
    assert.are.equal(100, err.cause.retry_after)
    assert.are.equal(1, #srv:log("rl"))
  end)

  it("cuts an attempt in flight at the deadline and sends none after it", function()
    local s = scheduler.new()
    local c = client_mod.new(test_driver(srv.url), { api_key = KEY, scheduler = s, timeout = 30 })
    srv:script("slow", { { hang = true } })
    local t0 = core.now()
    local _, err = c:request{ path = "/s/slow", deadline = s:time() + 0.5 }
    local took = core.now() - t0
    assert.are.equal("timeout", err.kind)
    assert.is_true(took < 5, "took " .. took)   -- not the 30 s request timeout, nor 5 of them
    assert.are.equal(1, #srv:log("slow"))
    local _, err2 = c:request{ path = "/s/slow", deadline = s:time() - 1 }
    assert.are.equal("timeout", err2.kind)
    assert.are.equal(1, #srv:log("slow"))
  end)

  it("never re-sends a POST after a reset once the request was read: uncertain", function()
    srv:script("sub", { { reset = true }, { status = 200, json = { id = "dup" } } })
    local resp, err = client:request{ method = "POST", path = "/s/sub", json = { x = 1 },
      idempotent = false }
    assert.is_nil(resp)
    assert.are.equal("uncertain", err.kind)
    assert.is_true(err.may_exist)
    assert.matches("may exist", err.message)
    assert.matches("client:task", err.message)
    assert.are.equal(1, #srv:log("sub", "POST"))
  end)

  it("never re-sends a POST reset on a reused keep-alive connection either", function()
    -- libcurl silently re-sends a request whose reused connection dies before any answer
    -- byte; a submit must go out on a fresh connection (the engine's fresh_connect).
    srv:script("warm", { { status = 200, json = {} } })
    assert(client:request{ path = "/s/warm" })
    srv:script("sub2", { { reset = true }, { status = 200, json = { id = "dup" } } })
    local _, err = client:request{ method = "POST", path = "/s/sub2", json = {},
      idempotent = false }
    assert.are.equal(1, #srv:log("sub2", "POST"),
      "sent twice: the engine has no fresh_connect (CURLOPT_FRESH_CONNECT) yet")
    assert.are.equal("uncertain", err.kind)
  end)

  it("never re-sends a POST after a timeout once sent: uncertain", function()
    srv:script("hang", { { hang = true } })
    local _, err = client:request{ method = "POST", path = "/s/hang", json = {}, timeout = 0.3 }
    assert.are.equal("uncertain", err.kind)
    assert.are.equal(1, #srv:log("hang", "POST"))
  end)

  it("re-sends a POST on 503 and on 429 (nothing was created)", function()
    srv:script("s", { { status = 503 }, { status = 429 }, { status = 200, json = { id = "t" } } })
    local resp = assert(client:request{ method = "POST", path = "/s/s", json = {} })
    assert.are.equal("t", resp.json.id)
    assert.are.equal(3, #srv:log("s"))
  end)

  it("does not re-send a POST on 500, and says the task may exist", function()
    srv:script("s5", { { status = 500, json = { message = "oops" } } })
    local _, err = client:request{ method = "POST", path = "/s/s5", json = {} }
    assert.are.equal("http", err.kind)
    assert.is_true(err.may_exist)
    assert.are.equal(1, #srv:log("s5"))
  end)

  it("re-sends a POST after connection refused (nothing was sent)", function()
    local port = scripted.free_port()
    local dead = "http://127.0.0.1:" .. port
    -- The first attempts are refused; then the server comes up on that port.
    local late
    local s = scheduler.new()
    local c = client_mod.new(test_driver(dead), {
      api_key = KEY, scheduler = s, retry = { base = 0.2, cap = 0.4, attempts = 8 },
    })
    local resp, err = s:run(function()
      s:spawn(function()
        s:sleep(0.3)
        late = scripted.start{ port = port }
        late:script("late", { { status = 200, json = { id = "made" } } })
      end)
      return c:request{ method = "POST", path = "/s/late", json = {} }
    end)
    local log = late and late:log("late") or {}
    if late then late:stop() end
    assert.is_nil(err)
    assert.are.equal("made", resp.json.id)
    assert.are.equal(1, #log)
    assert.is_true(c:counters().requests >= 2)
  end)

  it("retries a GET after a reset and after malformed JSON", function()
    srv:script("g", { { reset = true }, { status = 200, body = "{not json",
      headers = { ["Content-Type"] = "application/json" } }, { status = 200, json = { v = 3 } } })
    local resp, err = client:request{ path = "/s/g" }
    assert.is_nil(err)
    assert.are.equal(3, resp.json.v)
    assert.are.equal(3, #srv:log("g"))
  end)

  it("a POST answered with malformed JSON is uncertain, not re-sent", function()
    srv:script("mj", { { status = 200, body = "<html>oops</html>",
      headers = { ["Content-Type"] = "application/json" } } })
    local _, err = client:request{ method = "POST", path = "/s/mj", json = {} }
    assert.are.equal("uncertain", err.kind)
    assert.are.equal(1, #srv:log("mj"))
  end)

  it("bounds concurrent requests per host; the rest queue in the client", function()
    local s = scheduler.new()
    local c = client_mod.new(test_driver(srv.url), {
      api_key = KEY, scheduler = s, max_connections = 4,
    })
    srv:script("slow", { { status = 200, json = { ok = true }, delay_ms = 50 } })
    local results, nfailed = s:run(function()
      local fns = {}
      for i = 1, 40 do
        fns[i] = function() return c:request{ path = "/s/slow" } end
      end
      return s:gather(fns)
    end)
    local first
    for _, r in ipairs(results) do
      if not r.ok and not first then
        first = type(r.err) == "table" and (tostring(r.err.kind) .. ": " .. tostring(r.err.message))
          or tostring(r.err)
      end
    end
    assert.are.equal(0, nfailed, "failed: " .. nfailed .. ", the first: " .. tostring(first))
    assert.are.equal(40, #results)
    assert.are.equal(40, #srv:log("slow"))
    assert.is_true(srv:peak("slow") <= 4, "peak " .. srv:peak("slow"))
    assert.are.equal(4, srv:peak("slow"))
  end)

  it("works outside any run (blocking) too", function()
    srv:script("b", { { status = 200, json = { ok = 1 }, delay_ms = 20 } })
    local resp = assert(client:request{ path = "/s/b" })
    assert.are.equal(1, resp.json.ok)
  end)

  it("refuses non-http(s) URLs and raises on unknown options", function()
    local _, err = client:request{ url = "file:///etc/passwd" }
    assert.are.equal("invalid", err.kind)
    assert.has_error(function() client:request{ path = "/x", colour = "red" } end)
  end)

  it("reports download progress and streams to a file", function()
    local n = 300000
    srv:script("dl", { { status = 200, bytes = n } })
    local path = os.tmpname()
    local last, calls = nil, 0
    local resp = assert(client:request{ path = "/s/dl", output = path, auth = false,
      on_progress = function(now, total) calls = calls + 1 last = { now, total } end })
    assert.are.equal(200, resp.status)
    local f = assert(io.open(path, "rb"))
    local size = #f:read("*a")
    f:close()
    os.remove(path)
    assert.are.equal(n, size)
    assert.is_true(calls >= 1)
    assert.are.equal(n, last[1])
  end)
end)

describe("client:request inside run", function()
  it("reports download progress from a coroutine while others run", function()
    local srv = scripted.start()
    local s = scheduler.new()
    local c = client_mod.new(test_driver(srv.url), { api_key = KEY, scheduler = s })
    srv:script("dl", { { status = 200, bytes = 2000000, delay_ms = 300 } })
    local path = os.tmpname()
    local calls, ticks = 0, 0
    local ok, err = pcall(function()
      s:run(function()
        s:spawn(function() for _ = 1, 5 do s:sleep(0.05) ticks = ticks + 1 end end)
        assert(c:request{ path = "/s/dl", output = path, auth = false,
          on_progress = function() calls = calls + 1 end })
      end)
    end)
    srv:stop()
    local f = io.open(path, "rb")
    local size = f and #f:read("*a") or 0
    if f then f:close() end
    os.remove(path)
    assert.is_true(ok, tostring(err))
    assert.are.equal(2000000, size)
    assert.are.equal(5, ticks)
    -- The 300 ms before the answer spans at least one 0.25 s progress tick.
    assert.is_true(calls >= 2, "progress calls " .. calls)
  end)
end)

describe("vidu.json", function()
  it("encodes objects with sorted keys, arrays, marked empties and null", function()
    assert.are.equal('{"a":[1,2,3],"b":{},"c":[],"d":null,"e":"x\\"y"}',
      json.encode{ a = { 1, 2, 3 }, b = json.object(), c = json.array(), d = json.null, e = 'x"y' })
    assert.are.equal("2147483648", json.encode(2 ^ 31))
    assert.are.equal("0.5", json.encode(0.5))
    assert.are.equal("{}", json.encode({}))
  end)
  it("raises on what JSON cannot hold", function()
    assert.has_error(function() json.encode{ 1, nil, 3, n = 3 } end)
    assert.has_error(function() json.encode{ f = print } end)
    assert.has_error(function() json.encode(0 / 0) end)
  end)
  it("decodes, and returns nil, err on bad input", function()
    assert.are.same({ a = { 1, 2 } }, json.decode('{"a":[1,2]}'))
    local v, err = json.decode("{")
    assert.is_nil(v)
    assert.matches("json", err)
  end)
end)
