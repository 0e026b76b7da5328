-- vidu.core base64 and data: URIs, run once per implementation the CPU has (the scalar one
-- always, so the portable fallback is tested even where AVX2 is used in production).
local core = require("vidu.core")
local util = require("support.util")
local read_file, write_file = util.read_file, util.write_file

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local FIXTURES = "spec/fixtures/"

-- A slow but obvious reference encoder (no bit operators: runs on Lua 5.1 too).
local function ref_encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d = {}
    for k = 1, 4 do
      local v = math.floor(n / 64 ^ (4 - k)) % 64
      d[k] = ALPHABET:sub(v + 1, v + 1)
    end
    if not b then d[3], d[4] = "=", "=" elseif not c then d[4] = "=" end
    out[#out + 1] = table.concat(d)
  end
  return table.concat(out)
end

-- Deterministic pseudo-random bytes.
local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

-- The message for a length that is not a multiple of 4.
local function short_msg(len)
  return string.format("invalid base64 at byte %d: input ends inside a group of 4 " ..
    "(length %d is not a multiple of 4)", len + 1, len)
end

local impls = { "scalar" }
if pcall(core.b64_impl, "avx2") then impls[#impls + 1] = "avx2" end
core.b64_impl("auto")

describe("core.b64_impl", function()
  it("names the implementation in use and can switch", function()
    assert.are.equal(impls[#impls], core.b64_impl())
    assert.are.equal("scalar", core.b64_impl("scalar"))
    assert.are.equal("scalar", core.b64_impl())
    assert.are.equal(impls[#impls], core.b64_impl("auto"))
  end)

  it("raises for an unknown name", function()
    assert.has_error(function() core.b64_impl("sse9") end)
  end)
end)

for _, impl in ipairs(impls) do
  describe("base64 (" .. impl .. ")", function()
    before_each(function() core.b64_impl(impl) end)
    after_each(function() core.b64_impl("auto") end)

    describe("RFC 4648 section 10 test vectors", function()
      local vectors = {
        { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
      }
      for _, v in ipairs(vectors) do
        it(string.format("%q <-> %q", v[1], v[2]), function()
          assert.are.equal(v[2], core.b64encode(v[1]))
          assert.are.equal(v[1], core.b64decode(v[2]))
        end)
      end
    end)

    it("uses the whole standard alphabet in order", function()
      -- 48 bytes whose 6-bit groups count 0..63.
      local bytes = assert(core.b64decode(ALPHABET))
      assert.are.equal(48, #bytes)
      assert.are.equal(ALPHABET, core.b64encode(bytes))
      assert.are.equal(ref_encode(bytes), ALPHABET)
    end)

    it("round-trips every byte value", function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      all = table.concat(all)
      assert.are.equal(ref_encode(all), core.b64encode(all))
      assert.are.equal(all, core.b64decode(core.b64encode(all)))
    end)

    it("matches the reference encoder for lengths 0..300", function()
      math.randomseed(4648)
      for n = 0, 300 do
        local s = random_bytes(n)
        local enc = core.b64encode(s)
        assert.are.equal(ref_encode(s), enc, "length " .. n)
        assert.are.equal(4 * math.ceil(n / 3), #enc)
      end
    end)

    it("round-trips random data of every length 0..1000", function()
      math.randomseed(1000)
      for n = 0, 1000 do
        local s = random_bytes(n)
        assert.are.equal(s, core.b64decode(core.b64encode(s)), "length " .. n)
      end
    end)

    it("round-trips large buffers", function()
      math.randomseed(77)
      local block = random_bytes(4099)
      for _, n in ipairs({ 65536, 1048575, 1048576, 1048577, 3 * 1048576 + 2 }) do
        local s = block:rep(math.ceil(n / #block)):sub(1, n)
        local enc = core.b64encode(s)
        assert.are.equal(4 * math.ceil(n / 3), #enc)
        assert.are.equal(s, core.b64decode(enc), "length " .. n)
      end
    end)

    describe("rejects invalid input, naming the byte", function()
      local rows = {
        { "Z", short_msg(1) },
        { "Zg", short_msg(2) },
        { "Zg=", short_msg(3) },
        { "Zm9vY", short_msg(5) },
        { "Zm9v*g==", "invalid base64 at byte 5: unexpected character '*' (0x2A)" },
        { "Zm9v Yg==", "invalid base64 at byte 5: unexpected byte 0x20" },
        { "Zm9v\nYg==", "invalid base64 at byte 5: unexpected byte 0x0A" },
        { "Zm9v\r\n", "invalid base64 at byte 5: unexpected byte 0x0D" },
        { "Zm9v\n", "invalid base64 at byte 5: unexpected byte 0x0A" },
        { "Zm9-", "invalid base64 at byte 4: unexpected character '-' (0x2D)" },
        { "Zm9_", "invalid base64 at byte 4: unexpected character '_' (0x5F)" },
        { "Zm9v\195\169g=", "invalid base64 at byte 5: unexpected byte 0xC3" },
        { "\0\0\0\0", "invalid base64 at byte 1: unexpected byte 0x00" },
        { "Zm*", "invalid base64 at byte 3: unexpected character '*' (0x2A)" },
        { "====", "invalid base64 at byte 1: misplaced padding '='" },
        { "=Zg=", "invalid base64 at byte 1: misplaced padding '='" },
        { "Z===", "invalid base64 at byte 2: misplaced padding '='" },
        { "Z=", "invalid base64 at byte 2: misplaced padding '='" },
        { "Zg==Zg==", "invalid base64 at byte 3: misplaced padding '='" },
        { "Zm9=Zm9v", "invalid base64 at byte 4: misplaced padding '='" },
        { "Zg=A", "invalid base64 at byte 4: expected padding '=' after '='" },
        { "Zg=*", "invalid base64 at byte 4: unexpected character '*' (0x2A)" },
        { "Zh==", "invalid base64 at byte 2: unused bits before the padding are not zero" },
        { "Zm9=", "invalid base64 at byte 3: unused bits before the padding are not zero" },
      }
      for _, row in ipairs(rows) do
        it(string.format("%q", row[1]), function()
          local bytes, err = core.b64decode(row[1])
          assert.is_nil(bytes)
          assert.are.equal(row[2], err)
        end)
      end

      it("finds a bad byte deep in a long input", function()
        local good = ("QUJD"):rep(1000)
        for _, pos in ipairs({ 1, 31, 32, 33, 250, 2048, 3997, 3999, 4000 }) do
          local bad = good:sub(1, pos - 1) .. "!" .. good:sub(pos + 1)
          local bytes, err = core.b64decode(bad)
          assert.is_nil(bytes)
          assert.are.equal("invalid base64 at byte " .. pos .. ": unexpected character '!' (0x21)", err)
        end
      end)

      it("raises for a non-string", function()
        assert.has_error(function() core.b64decode(nil) end)
        assert.has_error(function() core.b64encode({}) end)
      end)
    end)
  end)
end

if #impls > 1 then
  describe("base64 implementations", function()
    after_each(function() core.b64_impl("auto") end)

    local function with(impl, f, ...)
      core.b64_impl(impl)
      return f(...)
    end

    it("encode identically for lengths 0..1000 and large ones", function()
      math.randomseed(2)
      local lengths = {}
      for n = 0, 1000 do lengths[#lengths + 1] = n end
      for _, n in ipairs({ 4095, 4096, 4097, 100000, 100001, 100002 }) do lengths[#lengths + 1] = n end
      for _, n in ipairs(lengths) do
        local s = random_bytes(math.min(n, 1001)):rep(math.ceil(n / 1001)):sub(1, n)
        assert.are.equal(with("scalar", core.b64encode, s), with("avx2", core.b64encode, s), "length " .. n)
      end
    end)

    it("report the same error for random corruptions", function()
      math.randomseed(3)
      local text = core.b64encode(random_bytes(3000))
      local junk = { "!", " ", "\n", "=", "-", "\128", "\255", "\0", "@", "[", "`", "{", ":" }
      for _ = 1, 300 do
        local pos = math.random(1, #text)
        local bad = text:sub(1, pos - 1) .. junk[math.random(#junk)] .. text:sub(pos + 1)
        local a, ea = with("scalar", core.b64decode, bad)
        local b, eb = with("avx2", core.b64decode, bad)
        assert.is_nil(a)
        assert.is_nil(b)
        assert.are.equal(ea, eb)
        assert.truthy(ea:find("at byte " .. pos .. ":", 1, true), ea)
      end
    end)
  end)
end

describe("data: URIs", function()
  local fixtures = {
    { "png_33x17.png", "image/png" },
    { "jpeg_33x17.jpg", "image/jpeg" },
    { "webp_33x17_lossy.webp", "image/webp" },
    { "webp_45x29_alpha.webp", "image/webp" },
  }

  describe("core.data_uri", function()
    for _, fx in ipairs(fixtures) do
      it("sniffs " .. fx[2] .. " from " .. fx[1], function()
        local bytes = read_file(FIXTURES .. fx[1])
        assert.are.equal("data:" .. fx[2] .. ";base64," .. core.b64encode(bytes), core.data_uri(bytes))
      end)
    end

    it("uses the mime type given", function()
      assert.are.equal("data:text/plain;base64,aGVsbG8=", core.data_uri("hello", "text/plain"))
      assert.are.equal("data:application/octet-stream;base64,", core.data_uri("", "application/octet-stream"))
    end)

    it("raises when there is no mime type and the bytes are not an image", function()
      assert.has_error(function() core.data_uri("hello") end,
        "data_uri: the bytes are not a PNG, JPEG or WebP image; pass a mime type")
      assert.has_error(function() core.data_uri("") end)
    end)

    it("raises for a bad mime type", function()
      assert.has_error(function() core.data_uri("x", "") end)
      assert.has_error(function() core.data_uri("x", "text/plain, x") end)
      assert.has_error(function() core.data_uri("x", "text/ plain") end)
      assert.has_error(function() core.data_uri("x", {}) end)
    end)
  end)

  describe("core.data_uri_file", function()
    local tmp
    before_each(function() tmp = os.tmpname() end)
    after_each(function() os.remove(tmp) end)

    for _, fx in ipairs(fixtures) do
      it("equals data_uri of the bytes for " .. fx[1], function()
        local path = FIXTURES .. fx[1]
        assert.are.equal(core.data_uri(read_file(path)), core.data_uri_file(path))
      end)
    end

    it("reads files larger than its read size piece by piece", function()
      math.randomseed(9)
      local block = random_bytes(1000)
      local png = read_file(FIXTURES .. "png_33x17.png")
      local chunk = 3 * 256 * 1024
      for _, n in ipairs({ chunk - 1, chunk, chunk + 1, 2 * chunk + 2, 3 * chunk + 500 }) do
        local data = (png .. block:rep(math.ceil(n / 1000))):sub(1, n)
        write_file(tmp, data)
        assert.are.equal("data:image/png;base64," .. core.b64encode(data), core.data_uri_file(tmp),
          "size " .. n)
      end
    end)

    it("reads the file once", function()
      local io_stats = io.open("/proc/self/io", "r")
      if not io_stats then return end -- not Linux
      io_stats:close()
      local function rchar()
        local f = assert(io.open("/proc/self/io", "r"))
        local s = f:read("*a")
        f:close()
        return tonumber(s:match("rchar: (%d+)"))
      end
      local size = 5 * 1024 * 1024
      write_file(tmp, read_file(FIXTURES .. "png_33x17.png") .. ("\0"):rep(size))
      local before = rchar()
      assert.is_string(core.data_uri_file(tmp))
      local read = rchar() - before
      assert.is_true(read >= size and read < size + 64 * 1024, "read " .. read .. " bytes")
    end)

    it("uses the mime type given, for any file", function()
      write_file(tmp, "hello")
      assert.are.equal("data:text/plain;base64,aGVsbG8=", core.data_uri_file(tmp, "text/plain"))
      write_file(tmp, "")
      assert.are.equal("data:text/plain;base64,", core.data_uri_file(tmp, "text/plain"))
    end)

    it("returns an error naming the path", function()
      -- { path, bytes to write there first (nil: leave it as it is), what follows "<path>: " }
      local cases = {
        { "spec/fixtures/no-such-file.png", nil, "No such file or directory" },
        { "spec/fixtures", nil, "not a regular file" },
        { tmp, "hello", "not a PNG, JPEG or WebP image (pass a mime type)" },
        { tmp, "", "not a PNG, JPEG or WebP image (pass a mime type)" },
      }
      for _, case in ipairs(cases) do
        if case[2] then write_file(case[1], case[2]) end
        local uri, err = core.data_uri_file(case[1])
        assert.is_nil(uri)
        assert.are.equal(case[1] .. ": " .. case[3], err)
      end
    end)

    it("raises for bad arguments", function()
      assert.has_error(function() core.data_uri_file() end)
      assert.has_error(function() core.data_uri_file(FIXTURES .. "png_33x17.png", "a,b") end)
    end)
  end)

  describe("core.parse_data_uri", function()
    for _, fx in ipairs(fixtures) do
      it("round-trips " .. fx[1], function()
        local bytes = read_file(FIXTURES .. fx[1])
        local mime, data = core.parse_data_uri(core.data_uri(bytes))
        assert.are.equal(fx[2], mime)
        assert.are.equal(bytes, data)
      end)
    end

    -- { uri, mime, bytes } or { uri, nil, error }
    local rows = {
      { "data:text/plain;base64,aGVsbG8=", "text/plain", "hello" },
      { "DATA:image/PNG;BASE64,aGk=", "image/PNG", "hi" },
      { "data:text/plain;charset=utf-8;base64,aGk=", "text/plain;charset=utf-8", "hi" },
      { "data:;base64,aGk=", "text/plain;charset=US-ASCII", "hi" },
      { "data:image/png;base64,", "image/png", "" },
      { "http://example.com/a.png", nil, "not a data: URI" },
      { "data", nil, "not a data: URI" },
      { "", nil, "not a data: URI" },
      { "data:image/png;base64", nil, "data: URI has no ',' before its data" },
      { "data:image/png,abc", nil, "data: URI is not base64 (only ';base64,' data URIs are supported)" },
      { "data:,abc", nil, "data: URI is not base64 (only ';base64,' data URIs are supported)" },
      { "data:image/png;base64,Zm9v!", nil,
        "data: URI payload: invalid base64 at byte 5: unexpected character '!' (0x21)" },
      { "data:image/png;base64,Zg", nil,
        "data: URI payload: " .. short_msg(2) },
      { "data:image/png;base64,Zm9v%3D", nil,
        "data: URI payload: invalid base64 at byte 5: unexpected character '%' (0x25)" },
    }
    for _, row in ipairs(rows) do
      it(string.format("%q", row[1]), function()
        local a, b = core.parse_data_uri(row[1])
        if row[2] then
          assert.are.equal(row[2], a)
          assert.are.equal(row[3], b)
        else
          assert.is_nil(a)
          assert.are.equal(row[3], b)
        end
      end)
    end
  end)
end)
