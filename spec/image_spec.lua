-- vidu.core image_info / image_info_file: format and size from the header, on real files
-- made by ffmpeg and ImageMagick (spec/fixtures/make.sh) and on damaged copies of them.
local core = require("vidu.core")
local util = require("support.util")
local read_file, write_file = util.read_file, util.write_file

local FIXTURES = "spec/fixtures/"

-- Replaces the bytes at 1-based position pos with s.
local function patch(data, pos, s)
  return data:sub(1, pos - 1) .. s .. data:sub(pos + #s)
end

-- Big-endian 16-bit value as 2 bytes.
local function be16(n)
  return string.char(math.floor(n / 256) % 256, n % 256)
end

-- { file, format, width, height, what it covers }
local fixtures = {
  { "png_33x17.png", "png", 33, 17, "RGB" },
  { "png_640x360.png", "png", 640, 360, "palette" },
  { "png_100x400.png", "png", 100, 400, "tall" },
  { "astronaut.png", "png", 1280, 720, "the demo image" },
  { "jpeg_33x17.jpg", "jpeg", 33, 17, "baseline SOF0" },
  { "jpeg_640x360.jpg", "jpeg", 640, 360, "baseline SOF0" },
  { "jpeg_33x17_progressive.jpg", "jpeg", 33, 17, "progressive SOF2" },
  { "jpeg_640x360_progressive.jpg", "jpeg", 640, 360, "progressive SOF2" },
  { "jpeg_100x400_exif.jpg", "jpeg", 100, 400, "60 KB APP1 Exif + 30 KB APP2 before SOF" },
  { "webp_33x17_lossy.webp", "webp", 33, 17, "lossy VP8" },
  { "webp_640x360_lossy.webp", "webp", 640, 360, "lossy VP8" },
  { "webp_100x400_lossless.webp", "webp", 100, 400, "lossless VP8L" },
  { "webp_45x29_alpha.webp", "webp", 45, 29, "extended VP8X with alpha" },
}

local MIME = { png = "image/png", jpeg = "image/jpeg", webp = "image/webp" }

describe("core.image_info", function()
  for _, fx in ipairs(fixtures) do
    it(string.format("reads %s as %s %dx%d (%s)", fx[1], fx[2], fx[3], fx[4], fx[5]), function()
      local info = assert(core.image_info(read_file(FIXTURES .. fx[1])))
      assert.are.same({ format = fx[2], mime = MIME[fx[2]], width = fx[3], height = fx[4] }, info)
    end)
  end

  it("covers the JPEG frame types the fixtures claim", function()
    assert.truthy(read_file(FIXTURES .. "jpeg_640x360.jpg"):find("\255\192", 3, true))
    assert.truthy(read_file(FIXTURES .. "jpeg_640x360_progressive.jpg"):find("\255\194", 3, true))
    local exif = read_file(FIXTURES .. "jpeg_100x400_exif.jpg")
    assert.are.equal("\255\225", exif:sub(3, 4))
    assert.are.equal("Exif\0\0", exif:sub(7, 12))
    assert.is_true(exif:find("\255\192", 3, true) > 65536)
  end)

  it("covers the WebP chunk types the fixtures claim", function()
    assert.are.equal("VP8 ", read_file(FIXTURES .. "webp_33x17_lossy.webp"):sub(13, 16))
    assert.are.equal("VP8L", read_file(FIXTURES .. "webp_100x400_lossless.webp"):sub(13, 16))
    local alpha = read_file(FIXTURES .. "webp_45x29_alpha.webp")
    assert.are.equal("VP8X", alpha:sub(13, 16))
    assert.truthy(alpha:find("ALPH", 17, true))
  end)

  describe("every prefix of a header is an error, never a crash", function()
    for _, fx in ipairs(fixtures) do
      it(fx[1], function()
        local data = read_file(FIXTURES .. fx[1])
        local function check(k)
          local info, err = core.image_info(data:sub(1, k))
          if info then return true end
          assert.is_string(err)
          if k == 0 then
            assert.are.equal("empty image data", err)
          else
            assert.truthy(err:match("^truncated "), err)
          end
          return false
        end
        -- Every length up to 200, then strides of 97; once a stride reaches a length that
        -- works, every length since the last failing one, to find where the header ends.
        local k, last_bad, ok_at = 0, nil, nil
        while k <= #data and not ok_at do
          if check(k) then ok_at = k else last_bad = k end
          k = k < 200 and k + 1 or k + 97
        end
        assert.is_not_nil(ok_at)
        local seen_ok = false
        for j = last_bad + 1, ok_at do
          if check(j) then seen_ok = true else assert.is_false(seen_ok, "length " .. j) end
        end
        -- Longer data never changes the answer.
        assert.is_true(check(math.min(#data, ok_at + 1000)))
      end)
    end
  end)

  describe("names the format and what is wrong", function()
    local png = read_file(FIXTURES .. "png_33x17.png")
    local jpeg = read_file(FIXTURES .. "jpeg_33x17.jpg")
    local lossy = read_file(FIXTURES .. "webp_33x17_lossy.webp")
    local lossless = read_file(FIXTURES .. "webp_100x400_lossless.webp")
    local extended = read_file(FIXTURES .. "webp_45x29_alpha.webp")
    -- A minimal JPEG header: SOI, then a SOF0 of 33x17 with 1 component.
    local sof0 = "\255\192" .. be16(11) .. "\8" .. be16(17) .. be16(33) .. "\1\1\17\0"

    local rows = {
      { "empty", "", "empty image data" },
      { "GIF", "GIF89a\1\0\1\0", "unknown image format (not PNG, JPEG or WebP)" },
      { "text", "hello world", "unknown image format (not PNG, JPEG or WebP)" },
      { "MP3 frame (0xFF but no SOI)", "\255\251\144\0", "unknown image format" },

      { "PNG signature mangled by a text-mode transfer", patch(png, 5, "\n\26\n"),
        "corrupt PNG: bad signature (file damaged by a text-mode transfer?)" },
      { "PNG signature mangled, data ending inside it", "\137PNG\n\26",
        "corrupt PNG: bad signature (file damaged by a text-mode transfer?)" },
      { "PNG first chunk not IHDR", patch(png, 13, "IDAT"),
        "corrupt PNG: IHDR missing (the first chunk must be IHDR)" },
      { "PNG IHDR length 14", patch(png, 9, "\0\0\0\14"), "corrupt PNG: IHDR chunk length is not 13" },
      { "PNG width 0", patch(png, 17, "\0\0\0\0"), "corrupt PNG: width or height is 0" },
      { "PNG height 0", patch(png, 21, "\0\0\0\0"), "corrupt PNG: width or height is 0" },
      { "PNG width 2^31", patch(png, 17, "\128\0\0\0"), "corrupt PNG: width or height is over 2^31-1" },

      { "JPEG data where a marker belongs", "\255\216\0\0",
        "corrupt JPEG: expected a marker, found other data" },
      { "JPEG EOI before SOF", "\255\216\255\217", "corrupt JPEG: end of image (EOI) before any SOF marker" },
      { "JPEG SOS before SOF", "\255\216\255\218\0\2", "corrupt JPEG: scan (SOS) before any SOF marker" },
      { "JPEG second SOI", "\255\216\255\216", "corrupt JPEG: second SOI marker before any SOF marker" },
      { "JPEG stuffed zero", "\255\216\255\0", "corrupt JPEG: stuffed 0xFF00 byte outside scan data" },
      { "JPEG segment length 1", "\255\216\255\224\0\1", "corrupt JPEG: segment length below 2" },
      { "JPEG SOF too short", "\255\216\255\192\0\5\8\0\17\0\33", "corrupt JPEG: SOF segment too short" },
      { "JPEG height 0 (DNL)", "\255\216" .. patch(sof0, 6, be16(0)),
        "corrupt JPEG: height 0 in SOF (DNL-defined height is not supported)" },
      { "JPEG width 0", "\255\216" .. patch(sof0, 8, be16(0)), "corrupt JPEG: width 0 in SOF" },
      { "JPEG APP0 length running past the data", patch(jpeg, 5, "\255\255"),
        "truncated JPEG: no SOF marker before end of data" },

      { "RIFF but WAVE", "RIFF\36\0\0\0WAVEfmt ", "unknown image format (a RIFF file but not WebP)" },
      { "WebP first chunk ALPH", patch(lossy, 13, "ALPH"),
        "corrupt WebP: first chunk is not VP8, VP8L or VP8X" },
      { "WebP VP8 inter frame", patch(lossy, 21, string.char(lossy:byte(21) + 1)),
        "corrupt WebP: VP8 data does not start with a key frame" },
      { "WebP VP8 start code", patch(lossy, 24, "\157\1\43"), "corrupt WebP: VP8 start code missing" },
      { "WebP VP8 width 0", patch(lossy, 27, "\0\0"), "corrupt WebP: VP8 width or height is 0" },
      { "WebP VP8L signature", patch(lossless, 21, "\46"), "corrupt WebP: VP8L signature missing" },
      { "WebP VP8L version 1", patch(lossless, 25, string.char(lossless:byte(25) + 32)),
        "corrupt WebP: unknown VP8L version" },
      { "WebP VP8X chunk size 9", patch(extended, 17, "\9\0\0\0"), "corrupt WebP: VP8X chunk too short" },
    }
    for _, row in ipairs(rows) do
      it(row[1], function()
        local info, err = core.image_info(row[2])
        assert.is_nil(info)
        assert.are.equal(row[3], err)
      end)
    end

    it("accepts a minimal JPEG with fill bytes and RST markers before SOF", function()
      local info = core.image_info("\255\216\255\255\255\208\255\1" .. ("\255"):rep(20) .. sof0:sub(2))
      assert.are.same({ format = "jpeg", mime = "image/jpeg", width = 33, height = 17 }, info)
    end)

    it("reads 14-bit VP8 and 24-bit VP8X sizes", function()
      -- VP8 scale bits (top 2 of each 16-bit field) are not part of the size.
      local info = core.image_info(patch(lossy, 27, "\255\255\255\255"))
      assert.are.equal(16383, info.width)
      assert.are.equal(16383, info.height)
      info = core.image_info(patch(extended, 25, "\255\255\255\0\0\1"))
      assert.are.equal(16777216, info.width)
      assert.are.equal(65537, info.height)
    end)
  end)

  it("survives random damage to headers", function()
    math.randomseed(31337)
    for _, fx in ipairs(fixtures) do
      local data = read_file(FIXTURES .. fx[1]):sub(1, 2048)
      for _ = 1, 300 do
        local s = data
        for _ = 1, math.random(1, 4) do
          local pos = math.random(1, math.min(#s, 64))
          s = patch(s, pos, string.char(math.random(0, 255)))
        end
        s = s:sub(1, math.random(0, #s))
        local info, err = core.image_info(s)
        if info then
          assert.is_true(info.width > 0 and info.height > 0)
        else
          assert.is_string(err)
        end
      end
    end
  end)

  it("raises for a non-string", function()
    assert.has_error(function() core.image_info(nil) end)
  end)
end)

describe("core.image_info_file", function()
  local tmp
  before_each(function() tmp = os.tmpname() end)
  after_each(function() os.remove(tmp) end)

  for _, fx in ipairs(fixtures) do
    it("reads " .. fx[1], function()
      local path = FIXTURES .. fx[1]
      local info = assert(core.image_info_file(path))
      -- mtime: seconds since the epoch, part of the key of a client's image cache.
      assert.is_number(info.mtime)
      assert.is_true(info.mtime > 1e9)
      info.mtime = nil
      assert.are.same({ format = fx[2], mime = MIME[fx[2]], width = fx[3], height = fx[4],
        size = #read_file(path) }, info)
    end)
  end

  it("reads only the header of a big file", function()
    local probe = io.open("/proc/self/io", "r")
    if not probe then return end -- not Linux
    probe:close()
    local function rchar()
      local f = assert(io.open("/proc/self/io", "r"))
      local s = f:read("*a")
      f:close()
      return tonumber(s:match("rchar: (%d+)"))
    end
    local exif = read_file(FIXTURES .. "jpeg_100x400_exif.jpg")
    local pad = 20 * 1024 * 1024
    for _, case in ipairs({
      { read_file(FIXTURES .. "png_33x17.png"), 68 * 1024 }, -- one 64 KB read (+ /proc reads)
      { exif, 256 * 1024 }, -- the SOF is past the first read
    }) do
      write_file(tmp, case[1] .. ("\0"):rep(pad))
      local before = rchar()
      local info = assert(core.image_info_file(tmp))
      local read = rchar() - before
      assert.are.equal(#case[1] + pad, info.size)
      assert.is_true(read <= case[2], "read " .. read .. " bytes")
    end
  end)

  it("reports a truncated file, naming the path", function()
    local data = read_file(FIXTURES .. "jpeg_100x400_exif.jpg")
    for _, n in ipairs({ 1, 100, 65536, 70000, 90000 }) do
      write_file(tmp, data:sub(1, n))
      local info, err = core.image_info_file(tmp)
      assert.is_nil(info)
      assert.are.equal(tmp .. ": truncated JPEG: no SOF marker before end of data", err)
    end
    write_file(tmp, read_file(FIXTURES .. "png_33x17.png"):sub(1, 20))
    local info, err = core.image_info_file(tmp)
    assert.is_nil(info)
    assert.are.equal(tmp .. ": truncated PNG header: IHDR chunk incomplete", err)
  end)

  it("returns errors naming the path", function()
    -- { path, bytes to write there first (nil: leave it as it is), what follows "<path>: " }
    local cases = {
      { "spec/fixtures/missing.png", nil, "No such file or directory" },
      { "spec/fixtures", nil, "not a regular file" },
      { tmp, "", "empty image data" },
      { tmp, "just some text", "unknown image format (not PNG, JPEG or WebP)" },
    }
    for _, case in ipairs(cases) do
      if case[2] then write_file(case[1], case[2]) end
      local info, err = core.image_info_file(case[1])
      assert.is_nil(info)
      assert.are.equal(case[1] .. ": " .. case[3], err)
    end
  end)

  it("refuses a FIFO without opening it (opening one would block)", function()
    local fifo = os.tmpname()
    os.remove(fifo)
    assert(os.execute("mkfifo " .. fifo))
    local info, err = core.image_info_file(fifo)
    local uri, uri_err = core.data_uri_file(fifo)
    os.remove(fifo)
    assert.is_nil(info)
    assert.are.equal(fifo .. ": not a regular file", err)
    assert.is_nil(uri)
    assert.are.equal(fifo .. ": not a regular file", uri_err)
  end)

  it("raises for a non-string path", function()
    assert.has_error(function() core.image_info_file(nil) end)
  end)
end)

describe("core.file_stat", function()
  it("gives a regular file's size and the mtime image_info_file reports", function()
    local path = FIXTURES .. "jpeg_640x360.jpg"
    local size, mtime = core.file_stat(path)
    local info = assert(core.image_info_file(path))
    assert.are.equal(#read_file(path), size)
    assert.is_true(math.type == nil or math.type(size) == "integer")
    assert.are.equal(info.mtime, mtime)
  end)

  it("says what is wrong, naming the path", function()
    local none, err = core.file_stat("spec/fixtures/no-such.png")
    assert.is_nil(none)
    assert.are.equal("spec/fixtures/no-such.png: No such file or directory", err)
    none, err = core.file_stat("spec/fixtures")
    assert.is_nil(none)
    assert.are.equal("spec/fixtures: not a regular file", err)
    assert.has_error(function() core.file_stat(nil) end)
  end)
end)
