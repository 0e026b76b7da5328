-- vidu.core engine against a real HTTP server on loopback (spec/support/testserver.lua).
-- Every test drives the engine until its transfers finish or a deadline passes; none sleeps
-- for a fixed time and none asserts a timing.
local core = require("vidu.core")
local testserver = require("support.testserver_process")
local util = require("support.util")
local read_file, write_file = util.read_file_if_exists, util.write_file
local drive, fetch = util.drive, util.fetch

local now = core.now or os.time
-- Generous: the suite also runs under valgrind, where everything is ~20x slower.
local DEADLINE = 90

-- The bytes /big, /bytes and /partial send: byte i (from 0) is i % 256.
local BLOCK
do
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  BLOCK = string.rep(table.concat(t), 256)
end
local function pattern(n)
  local full = math.floor(n / #BLOCK)
  return string.rep(BLOCK, full) .. BLOCK:sub(1, n - full * #BLOCK)
end

describe("vidu.core engine", function()
  local srv, engine, tmpfiles

  local function url(path) return srv.url .. path end
  local function tmpname()
    local p = os.tmpname()
    tmpfiles[#tmpfiles + 1] = p
    return p
  end

  setup(function()
    srv = testserver.start()
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  before_each(function()
    tmpfiles = {}
    engine = core.engine{}
  end)

  after_each(function()
    engine:close()
    for _, p in ipairs(tmpfiles) do os.remove(p) end
  end)

  describe("status codes", function()
    local cases = {
      { 200, "status 200" }, { 201, "status 201" }, { 204, "" }, { 301, "status 301" },
      { 400, "status 400" }, { 404, "status 404" }, { 429, "status 429" },
      { 500, "status 500" }, { 503, "status 503" },
    }
    for _, case in ipairs(cases) do
      it("reports " .. case[1] .. " as a completed transfer", function()
        local r = fetch(engine, { url = url("/status/" .. case[1]), follow = false })
        assert.is_true(r.ok)
        assert.are.equal(case[1], r.status)
        assert.are.equal(case[2], r.body)
        assert.are.equal(#case[2], r.bytes)
        assert.are.equal(url("/status/" .. case[1]), r.url)
      end)
    end

    it("fills http_version and time", function()
      local r = fetch(engine, { url = url("/status/200") })
      assert.are.equal(1.1, r.http_version)
      assert.is_number(r.time.total)
      assert.is_number(r.time.connect)
      assert.is_number(r.time.start)
      assert.is_true(r.time.total >= r.time.start)
    end)

    it("reuses the connection for the next request", function()
      local first = fetch(engine, { url = url("/status/200") })
      local second = fetch(engine, { url = url("/status/201") })
      assert.are.equal(1, first.connects)
      assert.are.equal(0, second.connects)
    end)

    it("does a HEAD without a body", function()
      local r = fetch(engine, { method = "HEAD", url = url("/status/200") })
      assert.is_true(r.ok)
      assert.are.equal(200, r.status)
      assert.are.equal("", r.body)
      assert.are.equal("10", r.headers["content-length"])
    end)
  end)

  describe("headers", function()
    it("sends the request headers, the user agent and no Expect", function()
      local r = fetch(engine, {
        url = url("/headers"),
        headers = { ["X-Custom"] = "value", ["X-Number"] = 42, ["X-Empty"] = "" },
      })
      local got = require("cjson").decode(r.body)
      assert.are.equal("value", got["x-custom"])
      assert.are.equal("42", got["x-number"])
      assert.are.equal("", got["x-empty"])
      assert.are.equal("lua-vidu/0.1", got["user-agent"])
      assert.is_nil(got["expect"])
    end)

    it("uses the engine's user_agent, which a request header overrides", function()
      local e = core.engine{ user_agent = "tester/1" }
      local r = fetch(e, { url = url("/headers") })
      assert.are.equal("tester/1", require("cjson").decode(r.body)["user-agent"])
      r = fetch(e, { url = url("/headers"), headers = { ["User-Agent"] = "mine" } })
      assert.are.equal("mine", require("cjson").decode(r.body)["user-agent"])
      e:close()
    end)

    it("lower-cases names, trims values and joins repeated headers", function()
      local r = fetch(engine, { url = url("/dup-headers") })
      assert.are.equal("one, two", r.headers["x-dup"])
      assert.are.equal("a=1, b=2", r.headers["set-cookie"])
      assert.are.equal("padded", r.headers["x-spaced"])
      assert.is_nil(r.headers["X-Dup"])
    end)

    it("takes many headers, and refuses more than 256 KiB of them", function()
      local r = fetch(engine, { url = url("/many-headers?n=500") })
      assert.is_true(r.ok)
      assert.are.equal(string.rep("v", 64), r.headers["x-header-500"])
      r = fetch(engine, { url = url("/many-headers?n=20000") })
      assert.is_false(r.ok)
      assert.are.equal("too_large", r.error)
      assert.matches("headers", r.message)
    end)

    it("keeps only the final response's headers after a redirect", function()
      local r = fetch(engine, { url = url("/redirect?to=/status/201") })
      assert.is_true(r.ok)
      assert.are.equal(201, r.status)
      assert.are.equal("201", r.headers["x-status"])
      assert.is_nil(r.headers["location"])
      assert.are.equal(url("/status/201"), r.url)
    end)

    it("returns the redirect itself when follow = false", function()
      local r = fetch(engine, { url = url("/redirect?to=/status/201"), follow = false })
      assert.is_true(r.ok)
      assert.are.equal(302, r.status)
      assert.are.equal("/status/201", r.headers["location"])
    end)
  end)

  describe("bodies", function()
    it("receives a 20 MB body intact", function()
      local n = 20 * 1024 * 1024
      local r = fetch(engine, { url = url("/big?bytes=" .. n) })
      assert.is_true(r.ok)
      assert.are.equal(n, r.bytes)
      assert.are.equal(n, #r.body)
      assert.is_true(r.body == pattern(n), "body differs from what the server sent")
    end)

    it("receives a chunked body", function()
      local r = fetch(engine, { url = url("/chunked?n=100&size=1000") })
      assert.is_true(r.ok)
      assert.are.equal("chunked", r.headers["transfer-encoding"])
      assert.are.equal(100000, #r.body)
      assert.are.equal(string.rep(pattern(1000), 100), r.body)
    end)

    it("sends a body from memory", function()
      local r = fetch(engine, { method = "POST", url = url("/echo"), body = "hello\0world" })
      assert.are.equal("hello\0world", r.body)
      assert.are.equal("POST", r.headers["x-method"])
      assert.are.equal("11", r.headers["x-body-length"])
      -- libcurl's invented form Content-Type is not sent for a raw body
      assert.are.equal("", r.headers["x-content-type"])
    end)

    it("keeps the caller's Content-Type and method", function()
      local r = fetch(engine, { method = "PATCH", url = url("/echo"), body = "{}",
        headers = { ["Content-Type"] = "application/json" } })
      assert.are.equal("PATCH", r.headers["x-method"])
      assert.are.equal("application/json", r.headers["x-content-type"])
      assert.are.equal("{}", r.body)
    end)

    it("sends Content-Length: 0 for a POST without a body", function()
      local r = fetch(engine, { method = "POST", url = url("/echo") })
      assert.is_true(r.ok)
      assert.are.equal("0", r.headers["x-body-length"])
    end)
  end)

  describe("many transfers", function()
    it("runs 200 transfers at once with increasing integer ids", function()
      local ids, last = {}, 0
      for i = 1, 200 do
        local path = (i % 2 == 0) and "/status/200" or ("/chunked?n=3&size=" .. i)
        local id = engine:request{ url = url(path) }
        assert.are.equal(math.floor(id), id)
        assert.is_true(id > last)
        last = id
        ids[#ids + 1] = id
      end
      assert.are.equal(200, engine:pending())
      local results = drive(engine, ids)
      for i, id in ipairs(ids) do
        local r = results[id]
        assert.is_true(r.ok, r.message)
        assert.are.equal(200, r.status)
        assert.are.equal((i % 2 == 0) and 10 or 3 * i, #r.body)
      end
      assert.are.equal(0, engine:pending())
    end)

    it("honours max_host_connections", function()
      local e = core.engine{ max_host_connections = 2, max_total_connections = 4 }
      local ids = {}
      for _ = 1, 20 do ids[#ids + 1] = e:request{ url = url("/status/200") } end
      local results = drive(e, ids)
      for _, id in ipairs(ids) do assert.is_true(results[id].ok) end
      e:close()
    end)
  end)

  describe("failures", function()
    it("times out on a slow server, after the request was sent", function()
      local r = fetch(engine, { url = url("/slow?ms=30000"), timeout = 0.3 })
      assert.is_false(r.ok)
      assert.are.equal("timeout", r.error)
      assert.is_true(r.sent)
      assert.are.equal(28, r.curl_code)
      assert.is_string(r.message)
    end)

    it("accepts whole-valued floats and integers for timeouts", function()
      local r = fetch(engine, { url = url("/status/200"), timeout = 5.0, connect_timeout = 2 })
      assert.is_true(r.ok)
    end)

    it("reports a refused connection as not sent", function()
      local r = fetch(engine, { method = "POST", url = "http://127.0.0.1:1/", body = "x" })
      assert.is_false(r.ok)
      assert.are.equal("connect", r.error)
      assert.is_false(r.sent)
      assert.is_nil(r.status)
    end)

    it("counts a redirect that was answered as sent, even if the next hop is refused", function()
      local r = fetch(engine, { method = "POST", url = url("/redirect?to=http://127.0.0.1:1/"),
        body = "x" })
      assert.is_false(r.ok)
      assert.are.equal("connect", r.error)
      assert.is_true(r.sent)
    end)

    describe("a reused connection that dies before any answer", function()
      -- libcurl re-sends such a request by itself on a new connection. Harmless for a GET; for
      -- a POST that creates something (a paid job) it is a duplicate, so POST and PATCH go
      -- out on a fresh connection unless fresh_connect = false says otherwise.
      local n = 0
      local function reused(opts)
        n = n + 1
        local key = "k" .. n .. "-" .. tostring(opts.method) .. "-" .. tostring(opts.fresh_connect)
        assert.is_true(fetch(engine, { url = url("/status/200") }).ok) -- leaves one in the pool
        opts.url = url("/reset-once?key=" .. key)
        local r = fetch(engine, opts)
        local count = fetch(engine, { url = url("/count?key=" .. key) }).body
        return r, tonumber(count)
      end

      it("is re-sent by libcurl for a GET", function()
        local r, count = reused{ method = "GET" }
        assert.is_true(r.ok)
        assert.are.equal(2, count)
      end)

      local cases = {
        { method = "POST", body = "{}" },
        { method = "PATCH", body = "{}" },
        { method = "GET", fresh_connect = true },
      }
      for _, case in ipairs(cases) do
        it("is not re-sent for " .. case.method .. " (fresh_connect = " ..
          tostring(case.fresh_connect) .. ")", function()
          local r, count = reused(case)
          assert.is_false(r.ok)
          assert.are.equal("reset", r.error)
          assert.is_true(r.sent)
          assert.are.equal(1, count)
        end)
      end

      it("is re-sent for a POST that says fresh_connect = false", function()
        local r, count = reused{ method = "POST", body = "{}", fresh_connect = false }
        assert.is_true(r.ok)
        assert.are.equal(2, count)
      end)
    end)

    it("reports a server closing mid-body as a reset", function()
      local r = fetch(engine, { url = url("/close-mid-body") })
      assert.is_false(r.ok)
      assert.are.equal("reset", r.error)
      assert.is_true(r.sent)
      assert.are.equal(200, r.status)
    end)

    it("reports an empty reply as a reset", function()
      local r = fetch(engine, { url = url("/empty-reply") })
      assert.is_false(r.ok)
      assert.are.equal("reset", r.error)
      assert.is_true(r.sent)
    end)

    it("refuses a redirect to file://", function()
      local r = fetch(engine, { url = url("/redirect?to=file:///etc/passwd") })
      assert.is_false(r.ok)
      assert.are.equal("protocol", r.error)
      assert.is_nil(r.body)
    end)

    it("stops after max_redirects", function()
      local r = fetch(engine, { url = url("/redirect-loop"), max_redirects = 3 })
      assert.is_false(r.ok)
      assert.are.equal("protocol", r.error)
      assert.are.equal(47, r.curl_code)
    end)

    it("refuses a response over the cap (Content-Length)", function()
      local r = fetch(engine, { url = url("/big?bytes=2000"), max_response = 1000 })
      assert.is_false(r.ok)
      assert.are.equal("too_large", r.error)
      assert.is_nil(r.body)
    end)

    it("refuses a response over the cap (chunked)", function()
      local r = fetch(engine, { url = url("/chunked?n=5&size=1000"), max_response = 1000 })
      assert.is_false(r.ok)
      assert.are.equal("too_large", r.error)
    end)

    it("accepts a response exactly at the cap", function()
      local r = fetch(engine, { url = url("/chunked?n=1&size=1000"), max_response = 1000 })
      assert.is_true(r.ok)
      assert.are.equal(1000, #r.body)
    end)
  end)

  describe("files", function()
    it("streams a download into a file, with progress", function()
      local n = 5 * 1024 * 1024
      local path = tmpname()
      local id = engine:request{ url = url("/bytes?n=" .. n), output = path }
      local seen, result = 0, nil
      local deadline = now() + DEADLINE
      while not result do
        assert.is_true(now() < deadline, "deadline passed")
        local down, total = engine:progress(id)
        assert.is_number(down)
        assert.is_true(down >= seen and down <= n)
        assert.is_true(total == 0 or total == n)
        seen = down
        result = engine:wait(100)[1]
      end
      assert.is_true(result.ok, result.message)
      assert.is_nil(result.body)
      assert.are.equal(n, result.bytes)
      assert.is_nil(engine:progress(id))
      assert.is_true(read_file(path) == pattern(n), "file differs from what the server sent")
    end)

    it("reports progress of a transfer in flight", function()
      local n = 200000
      local id = engine:request{ url = url("/partial?n=" .. n) }
      local down, total
      local deadline = now() + DEADLINE
      repeat
        assert.is_true(now() < deadline, "deadline passed")
        assert.are.same({}, engine:wait(50))
        down, total = engine:progress(id)
      until down >= n / 2
      assert.are.equal(n / 2, down)
      assert.are.equal(n, total)
      assert.is_true(engine:cancel(id))
    end)

    it("keeps an error response in memory and leaves the output file alone", function()
      local path = tmpname()
      write_file(path, "precious")
      local r = fetch(engine, { url = url("/status/404"), output = path })
      assert.is_true(r.ok)
      assert.are.equal(404, r.status)
      assert.are.equal("status 404", r.body)
      assert.are.equal("precious", read_file(path))
    end)

    it("creates an empty output file for an empty 2xx body", function()
      local path = tmpname()
      write_file(path, "old")
      local r = fetch(engine, { url = url("/bytes?n=0"), output = path })
      assert.is_true(r.ok)
      assert.are.equal("", read_file(path))
    end)

    it("caps a download too", function()
      local path = tmpname()
      local r = fetch(engine, { url = url("/chunked?n=10&size=1000"), output = path,
        max_response = 5000 })
      assert.are.equal("too_large", r.error)
    end)

    it("reports an output that cannot be written", function()
      local r = fetch(engine, { url = url("/bytes?n=10"), output = "/nonexistent-dir/x/out.bin" })
      assert.is_false(r.ok)
      assert.are.equal("file", r.error)
      assert.truthy(r.message:find("/nonexistent-dir/x/out.bin", 1, true))
    end)

    for _, method in ipairs({ "PUT", "POST" }) do
      it("streams an upload from a file (" .. method .. ")", function()
        local n = 3 * 1024 * 1024 + 7
        local path = tmpname()
        write_file(path, pattern(n))
        local id = engine:request{ method = method, url = url("/echo"), body_file = path }
        local r = drive(engine, { id })[id]
        assert.is_true(r.ok, r.message)
        assert.are.equal(method, r.headers["x-method"])
        assert.are.equal(tostring(n), r.headers["x-body-length"])
        assert.is_true(r.body == pattern(n), "echoed body differs from the file")
      end)
    end

    it("fails an upload whose file shrank before it was sent", function()
      local path = tmpname()
      write_file(path, pattern(100000))
      local id = engine:request{ method = "PUT", url = url("/echo"), body_file = path }
      write_file(path, "short") -- nothing has been read yet: request() only opens the file
      local r = drive(engine, { id })[id]
      assert.is_false(r.ok)
      assert.are.equal("file", r.error)
      assert.matches("ended early", r.message)
    end)

    it("sends the size a body_file had when the request was made", function()
      local path = tmpname()
      write_file(path, "0123456789")
      local id = engine:request{ method = "PUT", url = url("/echo"), body_file = path }
      write_file(path, "0123456789 and more that came later")
      local r = drive(engine, { id })[id]
      assert.is_true(r.ok)
      assert.are.equal("0123456789", r.body)
    end)

    it("reports upload progress", function()
      local n = 1000000
      local path = tmpname()
      write_file(path, pattern(n))
      local id = engine:request{ method = "POST", url = url("/echo"), body_file = path }
      local up, up_total, result = 0, 0, nil
      local deadline = now() + DEADLINE
      while not result do
        assert.is_true(now() < deadline, "deadline passed")
        local _, _, u, ut = engine:progress(id)
        assert.is_true(u >= up)
        up, up_total = u, ut
        result = engine:wait(50)[1]
      end
      assert.is_true(result.ok)
      assert.is_true(up_total == 0 or up_total == n)
    end)

    it("reports a missing body_file as not sent", function()
      local r = fetch(engine, { method = "POST", url = url("/echo"),
        body_file = "/nonexistent-dir/in.bin" })
      assert.is_false(r.ok)
      assert.are.equal("file", r.error)
      assert.is_false(r.sent)
      assert.truthy(r.message:find("/nonexistent-dir/in.bin", 1, true))
    end)
  end)

  describe("tls", function()
    -- A self-signed certificate must be refused: verification is on. openssl s_server is
    -- the peer (the `openssl` package is in the Makefile's deps).
    local tls_server, dir

    local function sh(cmd)
      local a, _, c = os.execute(cmd)
      if type(a) == "number" then return a == 0 end
      return a == true and (c == nil or c == 0)
    end

    setup(function()
      dir = os.tmpname()
      os.remove(dir)
      assert(sh("mkdir " .. dir))
      assert(sh(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes " ..
        "-keyout %s/key.pem -out %s/cert.pem -days 1 -subj /CN=localhost 2>/dev/null"):format(dir, dir)))
      tls_server = testserver.spawn(("openssl s_server -accept 127.0.0.1:0 -cert %s/cert.pem " ..
        "-key %s/key.pem -www 2>/dev/null"):format(dir, dir), "^ACCEPT")
    end)

    teardown(function()
      if tls_server then tls_server:stop() end
      if dir then sh("rm -rf " .. dir) end
    end)

    it("refuses a certificate it cannot verify, before sending anything", function()
      local port = tls_server.line:match(":(%d+)%s*$")
      local r = fetch(engine, { method = "POST", url = "https://127.0.0.1:" .. port .. "/",
        body = "x" })
      assert.is_false(r.ok)
      assert.are.equal("tls", r.error)
      assert.is_false(r.sent)
    end)
  end)

  describe("control", function()
    it("cancels a transfer in flight", function()
      local id = engine:request{ url = url("/hang") }
      assert.are.same({}, engine:step())
      assert.is_true(engine:cancel(id))
      assert.is_false(engine:cancel(id))
      assert.are.equal(1, engine:pending())
      local r = drive(engine, { id })[id]
      assert.is_false(r.ok)
      assert.are.equal("canceled", r.error)
      assert.are.equal(0, engine:pending())
      assert.is_false(engine:cancel(id))
      assert.is_false(engine:cancel(12345))
    end)

    it("knows pending() and timeout()", function()
      assert.are.equal(0, engine:pending())
      assert.are.equal(-1, engine:timeout())
      local id = engine:request{ url = url("/status/200") }
      assert.are.equal(1, engine:pending())
      local ms = engine:timeout()
      assert.is_true(ms >= 0)
      drive(engine, { id })
      assert.are.equal(0, engine:pending())
      assert.is_number(engine:timeout())
    end)

    it("sleeps in wait() with nothing pending and returns an empty list", function()
      assert.are.same({}, engine:wait(5))
      assert.are.equal(0, engine:pending())
    end)

    it("answers progress() for unknown ids with nil", function()
      assert.is_nil(engine:progress(999))
      assert.is_nil(engine:progress(1.5))
      assert.is_nil(engine:progress(1e300))
      assert.is_nil(engine:progress(-1))
    end)

    it("closes with transfers in flight", function()
      local e = core.engine{}
      for _ = 1, 10 do e:request{ url = url("/hang") } end
      e:request{ url = url("/big?bytes=1000000"), output = tmpname() }
      e:request{ method = "PUT", url = url("/echo"), body_file = "/etc/passwd" }
      e:step()
      e:close()
      e:close()
      assert.matches("closed", tostring(e))
    end)

    it("is collected with transfers in flight", function()
      local e = core.engine{}
      for _ = 1, 5 do e:request{ url = url("/hang") } end
      e:step()
      e = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
    end)

    it("closes through __close", function()
      local e = core.engine{}
      e:request{ url = url("/hang") }
      getmetatable(e).__close(e, nil)
      assert.has_error(function() e:pending() end, "attempt to use a closed engine")
    end)

    it("raises on use after close", function()
      local e = core.engine{}
      e:close()
      local calls = {
        function() e:request{ url = url("/status/200") } end,
        function() e:step() end, function() e:wait(10) end, function() e:progress(1) end,
        function() e:cancel(1) end, function() e:pending() end, function() e:timeout() end,
      }
      for _, call in ipairs(calls) do
        assert.has_error(call, "attempt to use a closed engine")
      end
    end)
  end)

  describe("misuse raises", function()
    local cases = {
      { "no table", nil, "table expected" },
      { "no url", {}, "url is required" },
      { "file url", { url = "file:///etc/passwd" }, "url must be http" },
      { "ftp url", { url = "ftp://example.com/" }, "url must be http" },
      { "unknown option", { url = "http://x/", tiemout = 1 }, "unknown option 'tiemout'" },
      { "url type", { url = 42 }, "url must be a string" },
      { "timeout type", { url = "http://x/", timeout = "1" }, "timeout must be a number" },
      { "negative timeout", { url = "http://x/", timeout = -1 }, "non%-negative" },
      { "fractional cap", { url = "http://x/", max_response = 1.5 }, "whole number" },
      { "follow type", { url = "http://x/", follow = 1 }, "follow must be a boolean" },
      { "fresh_connect type", { url = "http://x/", fresh_connect = "yes" },
        "fresh_connect must be a boolean" },
      { "headers type", { url = "http://x/", headers = "a" }, "headers must be a table" },
      { "header injection", { url = "http://x/", headers = { A = "b\r\nC: d" } }, "line break" },
      { "header name", { url = "http://x/", headers = { ["A B"] = "c" } }, "invalid header name" },
      { "header value type", { url = "http://x/", headers = { A = true } }, "must be a string" },
      { "bad method", { url = "http://x/", method = "GE T" }, "invalid method" },
      { "two bodies", { url = "http://x/", body = "a", body_file = "/etc/passwd" },
        "mutually exclusive" },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        local ok, err = pcall(engine.request, engine, case[2])
        assert.is_false(ok)
        assert.matches(case[3], err)
        assert.are.equal(0, engine:pending())
      end)
    end

    it("in core.engine options", function()
      assert.has_error(function() core.engine{ max_host_conections = 1 } end)
      assert.has_error(function() core.engine{ user_agent = 1 } end)
      assert.has_error(function() core.engine("x") end)
      assert.has_error(function() core.engine{ user_agent = "a\r\nX-Injected: 1" } end)
      assert.has_error(function() core.engine{ max_host_connections = -1 } end)
    end)
  end)
end)
