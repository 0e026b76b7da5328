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

  describe("sockets", function()
    -- The descriptors of this process whose `ls -l` target contains one of `kinds`, as a
    -- child started now sees them: `ls` lists its own, inherited from us through the shell
    -- unless they are close-on-exec.
    local function inherited(kinds)
      local p = assert(io.popen("ls -l /proc/self/fd/ 2>/dev/null"))
      local n = 0
      for line in p:lines() do
        for _, k in ipairs(kinds) do
          if line:find(k, 1, true) then n = n + 1 break end
        end
      end
      p:close()
      return n
    end

    -- Drives e's /slow transfer `id` to its end, counting what a child would inherit while it
    -- is in flight; -> the most counted (at least `before`).
    local function most_inherited_while(e, id, kinds, before)
      local done, most = nil, before
      for _ = 1, 5 do
        for _, res in ipairs(e:wait(10)) do
          if res.id == id then done = res end
        end
        most = math.max(most, inherited(kinds))
      end
      if not done then done = drive(e, { id })[id] end
      assert.are.equal("slow", done.body)
      return most
    end

    it("are close-on-exec: a child process inherits none of libcurl's connections", function()
      local kinds = { "socket:" }
      local before = inherited(kinds)
      -- A kept-alive connection stays open in libcurl's cache after the transfer.
      local r = fetch(engine, { url = url("/status/200") })
      assert.are.equal(200, r.status)
      assert.are.equal(before, inherited(kinds))
      -- And one still in flight.
      local id = engine:request{ url = url("/slow?ms=500") }
      assert.are.equal(before, most_inherited_while(engine, id, kinds, before))
    end)

    it("a watched engine's own wait set (epoll on Linux) is close-on-exec too", function()
      local kinds = { "socket:", "eventpoll" }
      engine:watch()
      local before = inherited(kinds)
      local id = engine:request{ url = url("/slow?ms=300") }
      assert.are.equal(before, most_inherited_while(engine, id, kinds, before))
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

    describe("elide_data_uris", function()
      -- /echo answers with the body it was sent: a JSON answer that echoes an image.
      local b64 = string.rep("iVBORw0KGgoAAAANSUhEUg+/", 40000) -- ~1 MB, split over many writes
      local sent = '{"images":["data:image/png;base64,' .. b64 .. '"],"task_id":"t1",' ..
        '"short":"data:image/png;base64,AAAA","prompt":"a \\"data:' .. b64 .. '"}'

      it("cuts long data: URIs out of a JSON answer before it is a string", function()
        local r = fetch(engine, { method = "POST", url = url("/echo"), body = sent,
          elide_data_uris = 1024 })
        assert.is_true(r.ok)
        assert.are.equal(#sent, r.bytes) -- what came over the wire
        assert.are.equal(1, r.elided)
        assert.are.equal('{"images":["data:... (' .. (#b64 + 22) .. ' bytes, not kept)"],' ..
          '"task_id":"t1","short":"data:image/png;base64,AAAA","prompt":"a \\"data:' .. b64 .. '"}',
          r.body)
      end)

      it("leaves the answer whole without the option, or when it is not JSON", function()
        local r = fetch(engine, { method = "POST", url = url("/echo"), body = sent })
        assert.are.equal(sent, r.body)
        assert.is_nil(r.elided)
        local html = '<img src="data:image/png;base64,' .. b64 .. '">'
        r = fetch(engine, { method = "POST", url = url("/echo"), body = html,
          elide_data_uris = 1024 })
        assert.are.equal(html, r.body)
        assert.are.equal(0, r.elided)
      end)

      it("is refused below 64 bytes and with stream or output", function()
        for _, case in ipairs{
          { { elide_data_uris = 10 }, "at least 64" },
          { { elide_data_uris = 1024, stream = true }, "not with stream" },
          { { elide_data_uris = 1024, output = "/tmp/x" }, "not with output" },
          { { elide_data_uris = "1024" }, "must be a number" },
        } do
          case[1].url = url("/echo")
          local ok, err = pcall(engine.request, engine, case[1])
          assert.is_false(ok)
          assert.matches(case[2], err)
        end
        assert.are.equal(0, engine:pending())
      end)
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

    it("a watched engine driven by wait() alone: 200 at once, then sockets whose fds come back", function()
      -- wait() on a watched engine waits on its own set of libcurl's sockets (epoll on
      -- Linux), kept in step with libcurl's wishes: a socket it missed would hang its
      -- transfer until its timeout, which here fails the transfer.
      local e = core.engine{ max_host_connections = 64 }
      e:watch()
      local ids = {}
      for i = 1, 200 do
        local path = (i % 2 == 0) and "/slow?ms=20" or ("/chunked?n=3&size=" .. i)
        ids[#ids + 1] = e:request{ url = url(path), timeout = 60 }
      end
      local results = drive(e, ids)
      for i, id in ipairs(ids) do
        local r = results[id]
        assert.is_true(r.ok, r.message)
        if i % 2 == 0 then
          assert.are.equal("slow", r.body)
        else
          assert.are.equal(3 * i, #r.body)
        end
      end
      -- The server closes each empty reply's connection, libcurl closes its socket, and the
      -- next connection most likely gets the same number back.
      for _ = 1, 30 do
        local gone = e:request{ url = url("/empty-reply"), timeout = 60 }
        local fresh = e:request{ url = url("/status/200"), timeout = 60, fresh_connect = true }
        local rs = drive(e, { gone, fresh })
        assert.are.equal("reset", rs[gone].error)
        assert.is_true(rs[fresh].ok, rs[fresh].message)
        assert.are.equal("status 200", rs[fresh].body)
      end
      e:close()
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

  describe("stall_timeout", function()
    it("ends a transfer from a server that accepts and never answers", function()
      local r = fetch(engine, { url = url("/hang"), stall_timeout = 1 })
      assert.is_false(r.ok)
      assert.are.equal("stalled", r.error)
      assert.are.equal(28, r.curl_code)
      assert.is_true(r.sent)
      assert.matches("stall_timeout", r.message)
    end)

    it("ends a request on a reused connection that goes silent", function()
      assert.are.equal(1, fetch(engine, { url = url("/status/200") }).connects)
      local r = fetch(engine, { url = url("/hang"), stall_timeout = 1 })
      assert.are.equal("stalled", r.error)
      assert.is_true(r.sent)
    end)

    it("ends a download that trickles, though no gap is as long as the limit", function()
      -- One byte every 1.5 s: never 3 s of silence, but under 1 byte/s for 3 s.
      local path = tmpname()
      local r = fetch(engine, { url = url("/trickle?n=1000&every=1500"), output = path,
        stall_timeout = 3 })
      assert.is_false(r.ok)
      assert.are.equal("stalled", r.error)
      assert.are.equal(200, r.status)
      assert.is_true(r.bytes >= 1, "bytes did arrive before the stall")
      assert.is_true(r.bytes < 1000)
    end)

    it("leaves a transfer that moves alone", function()
      local n = 5 * 1024 * 1024
      local path = tmpname()
      local r = fetch(engine, { url = url("/bytes?n=" .. n), output = path, stall_timeout = 1 })
      assert.is_true(r.ok, r.message)
      assert.are.equal(n, r.bytes)
    end)

    it("is not the total timeout, which keeps its own kind", function()
      local r = fetch(engine, { url = url("/hang"), timeout = 0.5, stall_timeout = 30 })
      assert.are.equal("timeout", r.error)
    end)

    it("is not a TLS handshake that never completes, which is the connect timeout", function()
      -- A socket that listens and is never read: the kernel accepts, nobody speaks TLS.
      local uv = util.luv()
      local tcp = uv.new_tcp()
      assert(tcp:bind("127.0.0.1", 0))
      assert(tcp:listen(8, function() end))
      local port = tcp:getsockname().port
      local r = fetch(engine, { url = "https://127.0.0.1:" .. port .. "/", connect_timeout = 1,
        stall_timeout = 1 })
      tcp:close()
      uv.run("nowait")
      assert.are.equal("timeout", r.error)
      assert.is_false(r.sent)
    end)

    it("rounds a fraction up to a whole second", function()
      local r = fetch(engine, { url = url("/hang"), stall_timeout = 0.2 })
      assert.are.equal("stalled", r.error)
      assert.matches("for 1 s", r.message)
    end)
  end)

  describe("output targets", function()
    -- Refused before anything is sent: /reset-once counts the requests it sees for a key.
    local n = 0
    local function refused(target, kind_phrase)
      n = n + 1
      local key = "target-" .. n
      local r = fetch(engine, { url = url("/reset-once?key=" .. key), output = target })
      assert.is_false(r.ok)
      assert.are.equal("file", r.error)
      assert.is_false(r.sent)
      assert.is_nil(r.status)
      assert.truthy(r.message:find(target, 1, true), r.message)
      assert.truthy(r.message:find(kind_phrase, 1, true), r.message)
      assert.are.equal("0", fetch(engine, { url = url("/count?key=" .. key) }).body)
    end

    local function sh(cmd)
      local a, _, c = os.execute(cmd)
      if type(a) == "number" then return a == 0 end
      return a == true and (c == nil or c == 0)
    end

    local function fifo()
      local p = tmpname()
      os.remove(p)
      assert(sh("mkfifo " .. p))
      return p
    end

    it("refuses a directory", function()
      local d = tmpname()
      os.remove(d)
      assert(sh("mkdir " .. d))
      refused(d, "is a directory")
      sh("rmdir " .. d)
    end)

    it("refuses a FIFO, without blocking on it", function()
      refused(fifo(), "is a FIFO")
    end)

    it("refuses a device", function()
      refused("/dev/null", "is a device")
    end)

    it("refuses a FIFO put there after the request, when the first byte comes", function()
      local p = tmpname()
      os.remove(p)
      local id = engine:request{ url = url("/bytes?n=1000"), output = p }
      assert(sh("mkfifo " .. p)) -- request() only looked; the file opens at the first byte
      local r = drive(engine, { id })[id]
      assert.is_false(r.ok)
      assert.are.equal("file", r.error)
      assert.truthy(r.message:find(p, 1, true), r.message)
    end)

    it("core.is_regular_or_absent says the same for the Lua side's final path", function()
      local file = tmpname()
      write_file(file, "x")
      assert.is_true(core.is_regular_or_absent(file))
      os.remove(file)
      assert.is_true(core.is_regular_or_absent(file))
      local f = fifo()
      local ok, why = core.is_regular_or_absent(f)
      assert.is_false(ok)
      assert.are.equal("is a FIFO", why)
      ok, why = core.is_regular_or_absent("/dev/null")
      assert.is_false(ok)
      assert.are.equal("is a device", why)
      ok, why = core.is_regular_or_absent("/")
      assert.is_false(ok)
      assert.are.equal("is a directory", why)
      ok, why = core.is_regular_or_absent("/dev/null/x")
      assert.is_false(ok)
      assert.is_string(why)
    end)
  end)

  describe("max_response on downloads", function()
    local GiB = 1024 * 1024 * 1024

    it("takes caps of 2 GiB and far beyond (no 32-bit overflow)", function()
      for _, cap in ipairs({ 2 * GiB - 1, 2 * GiB, 4 * GiB + 1, 2 ^ 40 }) do
        local path = tmpname()
        local r = fetch(engine, { url = url("/bytes?n=100000"), output = path, max_response = cap })
        assert.is_true(r.ok, r.message)
        assert.are.equal(100000, r.bytes)
      end
    end)

    it("refuses a Content-Length one byte over a cap above 2^31, before the body", function()
      local cases = { { 2 * GiB, "2147483648" }, { 8 * GiB, "8589934592" } }
      for _, case in ipairs(cases) do
        local path = tmpname()
        os.remove(path)
        local r = fetch(engine, { url = url("/claim?len=" .. string.format("%.0f", case[1] + 1)),
          output = path, max_response = case[1] })
        assert.is_false(r.ok)
        assert.are.equal("too_large", r.error)
        assert.truthy(r.message:find(case[2] .. " bytes", 1, true), r.message)
        assert.is_nil(read_file(path))
      end
    end)

    it("lets a Content-Length exactly at such a cap through to the body", function()
      local path = tmpname()
      local r = fetch(engine, { url = url("/claim?len=" .. string.format("%.0f", 4 * GiB)),
        output = path, max_response = 4 * GiB })
      -- The server sends 10 bytes of the 4 GiB it claimed: a short body, not too_large.
      assert.is_false(r.ok)
      assert.are.equal("reset", r.error)
      assert.are.equal(10, r.bytes)
      assert.are.equal(pattern(10), read_file(path))
    end)

    it("keeps a download's error answer in memory only up to 1 MiB", function()
      local path = tmpname()
      write_file(path, "precious")
      local r = fetch(engine, { url = url("/error-big?bytes=2000"), output = path,
        max_response = 2 * GiB })
      assert.is_true(r.ok)
      assert.are.equal(500, r.status)
      assert.are.equal(pattern(2000), r.body)
      r = fetch(engine, { url = url("/error-big?bytes=" .. (2 * 1024 * 1024)), output = path,
        max_response = 2 * GiB })
      assert.is_false(r.ok)
      assert.are.equal("too_large", r.error)
      assert.are.equal(500, r.status)
      assert.matches("error response", r.message)
      assert.are.equal("precious", read_file(path))
    end)
  end)

  describe("tls", function()
    -- A private CA made here with openssl, a leaf for 127.0.0.1 signed by it, and
    -- `openssl s_server -www` as the peer (the `openssl` package is in the Makefile's deps).
    -- Verification is on: refused by default, accepted once the CA is named.
    local tls, dir, https_url

    setup(function()
      tls = require("support.tls").start()
      dir, https_url = tls.dir, tls.url
    end)

    teardown(function()
      if tls then tls:stop() end
    end)

    it("refuses a certificate it cannot verify, before sending anything", function()
      local r = fetch(engine, { method = "POST", url = https_url, body = "x" })
      assert.is_false(r.ok)
      assert.are.equal("tls", r.error)
      assert.is_false(r.sent)
    end)

    it("accepts it with ca_file naming the private CA", function()
      local r = fetch(engine, { url = https_url, ca_file = dir .. "/ca.pem" })
      assert.is_true(r.ok, r.message)
      assert.are.equal(200, r.status)
    end)

    it("accepts it with ca_path naming a hashed directory that holds the CA", function()
      local r = fetch(engine, { url = https_url, ca_path = dir .. "/hashed" })
      assert.is_true(r.ok, r.message)
      assert.are.equal(200, r.status)
    end)

    it("still refuses it with a ca_file of another CA, or one that does not exist", function()
      for _, file in ipairs({ dir .. "/other.pem", dir .. "/missing.pem" }) do
        local r = fetch(engine, { url = https_url, ca_file = file })
        assert.is_false(r.ok)
        assert.are.equal("tls", r.error)
        assert.is_false(r.sent)
      end
    end)

    describe("reads the curl tool's variables in a child process", function()
      -- libcurl ignores these; the engine reads them at each request when neither ca_file
      -- nor ca_path is given. Each row: environment, request options -> ok or the error.
      local LUA = os.getenv("VIDU_LUA") or "lua5.4"
      local script
      setup(function()
        script = util.write_tmp([[
local core = require("vidu.core")
local e = core.engine{}
local id = e:request{ url = arg[1], ca_file = arg[2] ~= "" and arg[2] or nil }
local deadline = core.now() + 60
while core.now() < deadline do
  local r = e:wait(50)[1]
  if r then io.write(r.ok and "ok" or r.error) os.exit(0) end
end
io.write("deadline")
]])
      end)
      teardown(function() if script then os.remove(script) end end)

      local function child(env, ca_file)
        local vars = {}
        for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. util.shell_quote(v:gsub("DIR", dir)) end
        table.sort(vars)
        local cmd = ("env -u CURL_CA_BUNDLE -u SSL_CERT_FILE -u SSL_CERT_DIR %s %s %s %s %s")
          :format(table.concat(vars, " "), LUA, script, https_url,
            util.shell_quote(ca_file and ca_file:gsub("DIR", dir) or ""))
        local p = assert(io.popen(cmd, "r"))
        local out = p:read("*a")
        p:close()
        return out
      end

      local cases = {
        { "nothing set", {}, nil, "tls" },
        { "SSL_CERT_FILE", { SSL_CERT_FILE = "DIR/ca.pem" }, nil, "ok" },
        { "CURL_CA_BUNDLE", { CURL_CA_BUNDLE = "DIR/ca.pem" }, nil, "ok" },
        { "SSL_CERT_DIR", { SSL_CERT_DIR = "DIR/hashed" }, nil, "ok" },
        { "CURL_CA_BUNDLE over SSL_CERT_FILE", { CURL_CA_BUNDLE = "DIR/other.pem",
          SSL_CERT_FILE = "DIR/ca.pem" }, nil, "tls" },
        { "an empty SSL_CERT_FILE is ignored", { SSL_CERT_FILE = "" }, nil, "tls" },
        { "ca_file over the environment", { SSL_CERT_FILE = "DIR/other.pem" }, "DIR/ca.pem", "ok" },
      }
      for _, case in ipairs(cases) do
        it(case[1] .. " -> " .. case[4], function()
          assert.are.equal(case[4], child(case[2], case[3]))
        end)
      end
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
      { "negative stall_timeout", { url = "http://x/", stall_timeout = -1 }, "non%-negative" },
      { "stall_timeout type", { url = "http://x/", stall_timeout = "60" },
        "stall_timeout must be a number" },
      { "NaN stall_timeout", { url = "http://x/", stall_timeout = 0 / 0 }, "non%-negative" },
      { "ca_file type", { url = "http://x/", ca_file = true }, "ca_file must be a string" },
      { "empty ca_path", { url = "http://x/", ca_path = "" }, "ca_path must be a non%-empty path" },
      { "NUL in output", { url = "http://x/", output = "a\0b" }, "output must be a non%-empty path" },
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
