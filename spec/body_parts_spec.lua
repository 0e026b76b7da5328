-- engine:request{ body_parts = ... }: a body sent as strings and files, a file optionally
-- base64 encoded on the fly by the engine (issue 10: large inline images stream from C).
-- Against the test server on loopback (spec/support/testserver.lua), whose /echo sends the
-- received body back and /headers the received headers. No timing is asserted.
local core = require("vidu.core")
local testserver = require("support.testserver_process")
local util = require("support.util")
local write_file = util.write_file
local drive, fetch = util.drive, util.fetch

-- Bytes that depend on their position, so a dropped, doubled or reordered chunk shows.
local function pattern(n)
  local block = {}
  for i = 0, 4095 do block[#block + 1] = string.char((i * 131 + math.floor(i / 256)) % 256) end
  block = table.concat(block)
  local full = math.floor(n / #block)
  return string.rep(block, full) .. block:sub(1, n - full * #block)
end

describe("engine body_parts", function()
  local srv, engine, tmpfiles

  local function url(path) return srv.url .. path end
  local function tmpfile(data)
    local p = os.tmpname()
    tmpfiles[#tmpfiles + 1] = p
    write_file(p, data)
    return p
  end

  setup(function() srv = testserver.start() end)
  teardown(function() if srv then srv:stop() end end)
  before_each(function()
    tmpfiles = {}
    engine = core.engine{}
  end)
  after_each(function()
    engine:close()
    for _, p in ipairs(tmpfiles) do os.remove(p) end
  end)

  describe("sends exactly the parts, base64 encoded where asked", function()
    -- File sizes around the 3-byte groups and PART_CHUNK (49152), prefixes that leave libcurl's
    -- buffer 1-3 bytes short of a group (the carried group), and a multi-chunk file.
    local sizes = { 0, 1, 2, 3, 4, 5, 49151, 49152, 49153, 3 * 1024 * 1024 + 2 }
    local prefixes = { 0, 1, 2, 3, 16381, 16382, 16383, 65533, 65534, 65535 }
    for _, n in ipairs(sizes) do
      for _, plen in ipairs(n < 49151 and prefixes or { 1, 65534 }) do
        it(("a %d-byte file after a %d-byte prefix"):format(n, plen), function()
          local data = pattern(n)
          local path = tmpfile(data)
          local prefix = string.rep("p", plen)
          local r = fetch(engine, { method = "POST", url = url("/echo"),
            body_parts = { prefix, { file = path, base64 = true, size = n }, "]suffix" } })
          assert.is_true(r.ok, r.message)
          local want = prefix .. core.b64encode(data) .. "]suffix"
          assert.are.equal(tostring(#want), r.headers["x-body-length"])
          assert.is_true(r.body == want, "the body the server received differs")
        end)
      end
    end

    it("mixes raw and base64 file parts and strings, with an exact Content-Length", function()
      local a, b = pattern(70001), pattern(1000):reverse()
      local pa, pb = tmpfile(a), tmpfile(b)
      local parts = { "{\"x\":\"", { file = pa, base64 = true }, "\",\"raw\":", { file = pb },
        "", { file = pa, base64 = true, size = #a }, "}" }
      local want = "{\"x\":\"" .. core.b64encode(a) .. "\",\"raw\":" .. b .. core.b64encode(a) .. "}"
      local h = fetch(engine, { method = "POST", url = url("/headers"), body_parts = parts })
      assert.is_true(h.ok, h.message)
      local sent = require("cjson").decode(h.body)
      assert.are.equal(tostring(#want), sent["content-length"])
      assert.is_nil(sent["transfer-encoding"])
      local r = fetch(engine, { method = "PUT", url = url("/echo"), body_parts = parts,
        headers = { ["Content-Type"] = "application/json" } })
      assert.is_true(r.ok, r.message)
      assert.are.equal("PUT", r.headers["x-method"])
      assert.are.equal("application/json", r.headers["x-content-type"])
      assert.is_true(r.body == want)
    end)

    it("sends data parts (Lua strings) raw and base64 encoded, beside file parts", function()
      -- Sizes around the 3-byte groups and a prefix that leaves libcurl's buffer short of a
      -- group, as for files; the data strings are built here, not constants.
      for _, n in ipairs({ 0, 1, 2, 3, 4, 49152, 49153, 1024 * 1024 + 1 }) do
        local data = pattern(n)
        local prefix = string.rep("p", 65534)
        local r = fetch(engine, { method = "POST", url = url("/echo"),
          body_parts = { prefix, { data = data, base64 = true }, "|", { data = data }, "]" } })
        assert.is_true(r.ok, r.message)
        local want = prefix .. core.b64encode(data) .. "|" .. data .. "]"
        assert.are.equal(tostring(#want), r.headers["x-body-length"])
        assert.is_true(r.body == want, "the body the server received differs (" .. n .. " bytes)")
      end
      local a = pattern(5000)
      local r = fetch(engine, { method = "POST", url = url("/redirect?status=307&to=/echo"),
        body_parts = { { file = tmpfile(a), base64 = true }, ",", { data = a, base64 = true } } })
      assert.is_true(r.ok, r.message)
      assert.is_true(r.body == core.b64encode(a) .. "," .. core.b64encode(a),
        "the body after a 307 differs")
    end)

    it("sends many base64 file parts at once, each its own bytes", function()
      -- The engine's one chunk buffer serves every transfer's encoder in turn: files of
      -- different bytes, several chunks each, sent side by side, must each arrive as they are.
      local ids, want = {}, {}
      for i = 1, 12 do
        local data = pattern(3 * 49152 + 7 * i):sub(i + 1) .. string.char(i):rep(i)
        want[i] = "{" .. core.b64encode(data) .. "}"
        ids[i] = engine:request{ method = "POST", url = url("/echo"),
          body_parts = { "{", { file = tmpfile(data), base64 = true }, "}" } }
      end
      local got = drive(engine, ids)
      for i, id in ipairs(ids) do
        assert.is_true(got[id].ok, got[id].message)
        assert.is_true(got[id].body == want[i], "request " .. i .. "'s body differs")
      end
    end)

    it("keeps a data part's string alive while it is sent, and lets go once reported", function()
      -- The only reference to each string is the request: the collector runs between the
      -- request and its sending, and the bytes must still arrive whole (under ASan or valgrind
      -- a string freed too early is a read after free).
      collectgarbage("collect")
      local base = collectgarbage("count")
      local ids, want = {}, {}
      for i = 1, 8 do
        local data = pattern(256 * 1024 + i)
        want[i] = core.b64encode(data)
        ids[i] = engine:request{ method = "POST", url = url("/echo"),
          body_parts = { { data = data .. "", base64 = true } } }
      end
      collectgarbage("collect")
      collectgarbage("collect")
      local got = {}
      for _ = 1, 100 do
        for _, item in ipairs(engine:wait(50)) do got[item.id] = item end
        collectgarbage("step", 0)
        local n = 0
        for _ in pairs(got) do n = n + 1 end
        if n == #ids then break end
      end
      for i, id in ipairs(ids) do
        assert.is_true(got[id] and got[id].ok, "request " .. i)
        assert.is_true(got[id].body == want[i], "request " .. i .. "'s body differs")
      end
      -- Dropped, so that only what the engine might still anchor is left to count.
      got, want = nil, nil -- luacheck: ignore 311
      collectgarbage("collect")
      collectgarbage("collect")
      -- 8 strings of 256 KB each were anchored: none is left.
      local grew = collectgarbage("count") - base
      assert.is_true(grew < 512, ("the Lua heap kept %.0f KB"):format(grew))
    end)

    it("sends an empty list as an empty body", function()
      local r = fetch(engine, { method = "POST", url = url("/echo"), body_parts = {} })
      assert.is_true(r.ok, r.message)
      assert.are.equal("0", r.headers["x-body-length"])
      assert.are.equal("", r.body)
    end)
  end)

  describe("rewinds", function()
    for _, status in ipairs({ 307, 308 }) do
      it("and sends the whole body again after a " .. status .. " redirect", function()
        local data = pattern(200003)
        local path = tmpfile(data)
        local r = fetch(engine, { method = "POST",
          url = url("/redirect?status=" .. status .. "&to=/echo"),
          body_parts = { "[", { file = path, base64 = true, size = #data }, "|", { file = path },
            "]" } })
        assert.is_true(r.ok, r.message)
        assert.are.equal(url("/echo"), r.url)
        assert.are.equal("POST", r.headers["x-method"])
        assert.is_true(r.body == "[" .. core.b64encode(data) .. "|" .. data .. "]",
          "the body after the redirect differs")
      end)
    end
  end)

  describe("fails with error \"file\", naming the path", function()
    it("when the file's size is not the size given (before anything is sent)", function()
      local path = tmpfile(pattern(1000))
      local r = fetch(engine, { method = "POST", url = url("/echo"),
        body_parts = { "a", { file = path, base64 = true, size = 999 } } })
      assert.is_false(r.ok)
      assert.are.equal("file", r.error)
      assert.is_false(r.sent)
      assert.truthy(r.message:find(path, 1, true))
      assert.matches("has 1000 bytes, not the 999", r.message)
    end)

    it("when the file shrinks while it is sent", function()
      local n = 1024 * 1024
      local path = tmpfile(pattern(n))
      local id = engine:request{ method = "POST", url = url("/echo"),
        body_parts = { "{", { file = path, base64 = true, size = n }, "}" } }
      -- request() opened the file and promised 4/3 of n; nothing has been read yet. Half of
      -- it is still there to be sent, then the file ends early.
      write_file(path, pattern(n / 2))
      local r = drive(engine, { id })[id]
      assert.is_false(r.ok)
      assert.are.equal("file", r.error)
      assert.truthy(r.message:find("cannot read body part '" .. path .. "'", 1, true))
      assert.matches("changed size while being sent %(1048576 bytes expected%)", r.message)
    end)

    it("when the file grows while it is sent", function()
      local path = tmpfile(pattern(100000))
      local id = engine:request{ method = "POST", url = url("/echo"),
        body_parts = { { file = path, base64 = true } } }
      local f = assert(io.open(path, "ab"))
      f:write("more")
      f:close()
      local r = drive(engine, { id })[id]
      assert.is_false(r.ok)
      assert.are.equal("file", r.error)
      assert.truthy(r.message:find(path, 1, true))
      assert.matches("changed size while being sent %(100000 bytes expected%)", r.message)
    end)

    it("when a raw file part grows while it is sent", function()
      local path = tmpfile(pattern(5000))
      local id = engine:request{ method = "POST", url = url("/echo"),
        body_parts = { { file = path }, "tail" } }
      local f = assert(io.open(path, "ab"))
      f:write("more")
      f:close()
      local r = drive(engine, { id })[id]
      assert.are.equal("file", r.error)
      assert.matches("changed size while being sent", r.message)
    end)

    -- The file's last byte fills libcurl's 64 KiB buffer exactly and only empty parts
    -- follow: libcurl asks for nothing more, so the end is checked in the same call.
    for _, case in ipairs({ { "raw", 65536, false }, { "base64", 49152, true } }) do
      it("when a " .. case[1] .. " file that ends the body grows while it is sent", function()
        local path = tmpfile(pattern(case[2]))
        local id = engine:request{ method = "POST", url = url("/echo"),
          body_parts = { { file = path, base64 = case[3] }, "" } }
        local f = assert(io.open(path, "ab"))
        f:write("more")
        f:close()
        local r = drive(engine, { id })[id]
        assert.are.equal("file", r.error)
        assert.truthy(r.message:find(path, 1, true))
        assert.matches("changed size while being sent", r.message)
      end)
    end

    it("when the file is missing or not a regular file (not sent)", function()
      for _, case in ipairs({ { "/nonexistent-dir/in.png", "cannot open body part" },
        { "/", "cannot read body part '/': not a regular file" } }) do
        local r = fetch(engine, { method = "POST", url = url("/echo"),
          body_parts = { "x", { file = case[1], base64 = true } } })
        assert.is_false(r.ok)
        assert.are.equal("file", r.error)
        assert.is_false(r.sent)
        assert.truthy(r.message:find(case[2], 1, true), r.message)
      end
    end)
  end)

  describe("refuses misuse before anything is sent", function()
    local cases = {
      { "not a table", { body_parts = "x" }, "body_parts must be a table" },
      { "a number part", { body_parts = { 1 } }, "body_parts%[1%] must be a string or a table" },
      { "no file", { body_parts = { "a", {} } }, "body_parts%[2%]%.file must be a non%-empty path" },
      { "empty file", { body_parts = { { file = "" } } }, "body_parts%[1%]%.file must be" },
      { "NUL in file", { body_parts = { { file = "a\0b" } } }, "body_parts%[1%]%.file must be" },
      { "unknown key", { body_parts = { { file = "/x", bas64 = true } } },
        "body_parts%[1%]: unknown option 'bas64'" },
      { "base64 type", { body_parts = { { file = "/x", base64 = 1 } } }, "base64 must be a boolean" },
      { "negative size", { body_parts = { { file = "/x", size = -1 } } }, "size must be a non%-negative" },
      { "fractional size", { body_parts = { { file = "/x", size = 1.5 } } }, "size must be a whole" },
      { "data not a string", { body_parts = { { data = 1 } } }, "body_parts%[1%]%.data must be a string" },
      { "file and data", { body_parts = { { data = "x", file = "/x" } } }, "has both file and data" },
      { "size with data", { body_parts = { { data = "x", size = 1 } } }, "size is only for a file" },
      { "with body", { body = "a", body_parts = {} }, "body_parts excludes body and body_file" },
      { "with body_file", { body_file = "/etc/passwd", body_parts = {} }, "body_parts excludes" },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        local req = { method = "POST", url = "http://127.0.0.1:1/" }
        for k, v in pairs(case[2]) do req[k] = v end
        local ok, err = pcall(engine.request, engine, req)
        assert.is_false(ok)
        assert.matches(case[3], err)
        assert.are.equal(0, engine:pending())
      end)
    end
  end)

  it("never makes the encoded file a Lua string", function()
    -- 8 MB of file, 10.7 MB encoded: the Lua heap stays far below that while it is sent.
    local n = 8 * 1024 * 1024
    local path = tmpfile(pattern(n))
    collectgarbage("collect")
    local base = collectgarbage("count")
    local prefix, suffix = "{\"image\":\"data:image/png;base64,", "\"}"
    local id = engine:request{ method = "POST", url = url("/headers"),
      body_parts = { prefix, { file = path, base64 = true, size = n }, suffix } }
    local peak, result = 0, nil
    while not result do
      result = engine:wait(20)[1]
      local kb = collectgarbage("count") - base
      if kb > peak then peak = kb end
    end
    assert.are.equal(id, result.id)
    assert.is_true(result.ok, result.message)
    assert.are.equal(tostring(#prefix + 4 * math.ceil(n / 3) + #suffix),
      require("cjson").decode(result.body)["content-length"])
    assert.is_true(peak < 1024, ("the Lua heap grew by %.0f KB"):format(peak))
  end)
end)
