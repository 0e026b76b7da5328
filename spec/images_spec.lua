-- Image inputs: the four forms, the checks made from header bytes, and the route (url,
-- inline, upload) each provider gets. No network: uploads are tested in providers_spec.
-- luacheck: max line length 130
local core = require("vidu.core")
local images = require("vidu.images")
local util = require("support.util")
local read = util.read_file

local FIX = "spec/fixtures/"

local function be32(n)
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
end

-- The header of a PNG of w x h: all image_info needs.
local function png_header(w, h)
  return "\137PNG\r\n\26\n" .. be32(13) .. "IHDR" .. be32(w) .. be32(h) .. "\8\2\0\0\0\0\0\0\0"
end

local tmpfiles = {}

-- A PNG file of `size` bytes (sparse past the header), so size limits can be tested
-- without writing megabytes.
local function big_png(size, w, h)
  local path = os.tmpname()
  tmpfiles[#tmpfiles + 1] = path
  local f = assert(io.open(path, "wb"))
  f:write(png_header(w or 640, h or 360))
  f:seek("set", size - 1)
  f:write("\0")
  f:close()
  return path
end

teardown(function()
  for _, p in ipairs(tmpfiles) do os.remove(p) end
end)

describe("images.resolve", function()
  -- { fixture, format, mime, width, height }
  local fixtures = {
    { "png_640x360.png", "png", "image/png", 640, 360 },
    { "png_33x17.png", "png", "image/png", 33, 17 },
    { "jpeg_640x360.jpg", "jpeg", "image/jpeg", 640, 360 },
    { "jpeg_640x360_progressive.jpg", "jpeg", "image/jpeg", 640, 360 },
    { "jpeg_33x17.jpg", "jpeg", "image/jpeg", 33, 17 },
    { "webp_640x360_lossy.webp", "webp", "image/webp", 640, 360 },
    { "webp_45x29_alpha.webp", "webp", "image/webp", 45, 29 },
    { "webp_33x17_lossy.webp", "webp", "image/webp", 33, 17 },
    { "astronaut.png", "png", "image/png", nil, nil },
  }
  for _, row in ipairs(fixtures) do
    it("reads " .. row[1] .. " as a path, as bytes and as a data: URI", function()
      local path = FIX .. row[1]
      local d = assert(images.resolve("vidu", path))
      assert.equal("file", d.source)
      assert.equal("inline", d.route)
      assert.equal(row[2], d.format)
      assert.equal(row[3], d.mime)
      if row[4] then
        assert.equal(row[4], d.width)
        assert.equal(row[5], d.height)
      end
      local bytes = read(path)
      assert.equal(#bytes, d.size)
      assert.equal(row[1], d.name)

      local b = assert(images.resolve("vidu", { data = bytes }))
      assert.equal("bytes", b.source)
      assert.equal(row[2], b.format)
      assert.equal(#bytes, b.size)

      local uri = core.data_uri(bytes)
      local u = assert(images.resolve("vidu", uri))
      assert.equal("bytes", u.source)
      assert.equal("inline", u.route)
      assert.equal(uri, u.data_uri) -- the caller's URI is sent as is
    end)
  end

  it("passes http(s) URLs through without reading anything", function()
    for _, url in ipairs({ "https://example.com/a.png", "http://127.0.0.1:1/x.jpg?sig=1",
      "HTTPS://EXAMPLE.COM/no-extension" }) do
      for _, provider in ipairs({ "fal", "vidu", "relay", "vtrix", "wavespeed" }) do
        local d = assert(images.resolve(provider, url))
        assert.equal("url", d.route)
        assert.equal(url, d.url)
      end
    end
  end)

  it("accepts Vidu's own ssupload: references on vidu only", function()
    local d = assert(images.resolve("vidu", "ssupload:?id=123"))
    assert.equal("ssupload:?id=123", d.url)
    local _, err = images.resolve("relay", "ssupload:?id=123")
    assert.equal("image", err.kind)
  end)

  -- { input (string or function returning one), provider, limit, message substring }
  local bad = {
    { "/nonexistent/astronaut.png", "vidu", "readable image", "/nonexistent/astronaut.png" },
    { FIX .. "make.sh", "vidu", "readable image", "unknown image format" },
    { FIX .. "png_100x400.png", "vidu", "1:4..4:1", "100x400, its aspect ratio must be strictly between 1:4 and 4:1" },
    { FIX .. "webp_100x400_lossless.webp", "wavespeed", "1:4..4:1", "strictly between" },
    { FIX .. "jpeg_100x400_exif.jpg", "vtrix", "1:4..4:1", "100x400" },
    { { data = png_header(400, 100) }, "fal", "1:4..4:1", "400x100" },
    { { data = png_header(4001, 1000) }, "relay", "1:4..4:1", "4001x1000" },
    { { data = "GIF89a\1\0\1\0" }, "vidu", "readable image", "the image bytes: unknown image format" },
    { { data = "" }, "vidu", "readable image", "empty image data" },
    { { data = png_header(10, 10):sub(1, 20) }, "vidu", "readable image", "truncated PNG" },
    { "data:image/png;base64,@@@@", "vidu", "data URI", "bad data: URI" },
    { "data:image/png," .. png_header(10, 10), "vidu", "data URI", "bad data: URI" },
    { "data:image/jpeg;base64," .. core.b64encode(png_header(10, 10)), "vidu", "image/png",
      "the data: URI says image/jpeg but the bytes are png" },
    { "ftp://example.com/a.png", "vidu", "URL scheme", "only http(s) URLs, data: URIs and local paths" },
    { "file:///etc/passwd", "fal", "URL scheme", "only http(s) URLs" },
    { "https://exa mple.com/a.png", "vidu", "URL", "is not a valid URL" },
    { function() return big_png(50 * 1000 * 1000 + 1) end, "vidu", 50000000,
      "is 50.0 MB (50000001 bytes), the limit is 50.0 MB" },
    { function() return big_png(60 * 1000 * 1000) end, "wavespeed", 50000000, "the limit is 50.0 MB" },
    -- No upload API: above the inline limit there is no route.
    { function() return big_png(10 * 1000 * 1000) end, "relay", 10000000,
      "too large to send inline (the limit is under 10.0 MB) and relay has no upload API" },
    { function() return big_png(14 * 1000 * 1000) end, "vtrix", 14000000, "vtrix has no upload API" },
  }
  for i, row in ipairs(bad) do
    it(string.format("refuses #%d (%s): limit %s", i, row[2], tostring(row[3])), function()
      local input = row[1]
      if type(input) == "function" then input = input() end
      local d, err = images.resolve(row[2], input)
      assert.is_nil(d)
      assert.equal("image", err.kind)
      assert.equal("image", err.field)
      assert.equal(row[2], err.provider)
      assert.equal(row[3], err.limit)
      assert.truthy(err.message:find(row[4], 1, true), "message: " .. err.message)
      assert.equal("image: ", err.message:sub(1, 7))
    end)
  end

  it("takes aspect ratios just inside 1:4 and 4:1", function()
    assert.truthy(images.resolve("vidu", { data = png_header(101, 400) }))
    assert.truthy(images.resolve("vidu", { data = png_header(399, 100) }))
    assert.truthy(images.resolve("vidu", { data = png_header(1, 1) }))
  end)

  -- Routes for local images: { provider, size, upload option, route | limit of the error }
  local routes = {
    { "fal", 1000, nil, "upload" },           -- fal uploads by default, even small files
    { "fal", 1000, false, "inline" },
    { "fal", 10 * 1000 * 1000, false, 10000000 },
    { "vidu", 9999999, nil, "inline" },        -- "under 10 MB" decoded
    { "vidu", 10 * 1000 * 1000, nil, 10000000 },  -- its upload API takes under 10 MB too
    { "vidu", 1000, true, "upload" },
    { "vidu", 9999999, true, "upload" },
    { "vidu", 10 * 1000 * 1000, true, 10000000 },
    { "vidu", 30 * 1000 * 1000, nil, 10000000 },
    { "vidu", 12 * 1000 * 1000, false, 10000000 },
    { "relay", 9999999, nil, "inline" },
    { "relay", 1000, true, "no upload API" },
    { "vtrix", 13999999, nil, "inline" },
    { "vtrix", 1000, true, "no upload API" },
    { "wavespeed", 9999999, nil, "inline" },
    { "wavespeed", 12 * 1000 * 1000, nil, "upload" },
    { "wavespeed", 20 * 1000 * 1000, nil, "upload" },   -- "up to 20 MB"
    { "wavespeed", 20 * 1000 * 1000 + 1, nil, 20000001 },
    { "wavespeed", 1000, true, "upload" },
  }
  for _, row in ipairs(routes) do
    it(string.format("%s, %d bytes, upload=%s -> %s", row[1], row[2], tostring(row[3]),
      tostring(row[4])), function()
      local path = big_png(row[2])
      local d, err = images.resolve(row[1], path, { upload = row[3] })
      if type(row[4]) == "string" and row[4] ~= "no upload API" then
        assert.is_nil(err)
        assert.equal(row[4], d.route)
      else
        assert.is_nil(d)
        assert.equal("image", err.kind)
        assert.equal(row[4], err.limit)
      end
      -- The same size given as bytes takes the same route.
      if row[2] <= 1000 then
        local bd = images.resolve(row[1], { data = read(path) }, { upload = row[3] })
        assert.equal(d and d.route, bd and bd.route)
      end
    end)
  end

  it("says what to do with a local image no route takes: the limit and the ways out", function()
    local _, err = images.resolve("vidu", big_png(12 * 1000 * 1000))
    assert.truthy(err.message:find("under 10.0 MB", 1, true), err.message)
    assert.truthy(err.message:find("http(s) URL", 1, true), err.message)
    assert.truthy(err.message:find("up to 50.0 MB", 1, true), err.message)
    assert.truthy(err.message:find("smaller file", 1, true), err.message)
  end)

  it("names bytes inputs for uploads after their format", function()
    local d = assert(images.resolve("fal", { data = read(FIX .. "jpeg_33x17.jpg") }))
    assert.equal("image.jpg", d.name)
    d = assert(images.resolve("fal", { data = read(FIX .. "jpeg_33x17.jpg"), name = "me.jpeg" }))
    assert.equal("me.jpeg", d.name)
  end)

  it("reads a file's header once while its size and mtime stay, again when they change", function()
    local path = os.tmpname()
    tmpfiles[#tmpfiles + 1] = path
    local function put(fixture, mtime)
      local f = assert(io.open(path, "wb"))
      f:write(read(FIX .. fixture))
      f:close()
      assert(os.execute(("touch -d @%d %q"):format(mtime, path)))
    end
    local reads = 0
    local real = core.image_info_file
    core.image_info_file = function(...)
      reads = reads + 1
      return real(...)
    end
    local ok, err = pcall(function()
      put("png_640x360.png", 1700000000)
      for _ = 1, 5 do
        local d = assert(images.resolve("vidu", path))
        assert.are.same({ 640, 360, "png" }, { d.width, d.height, d.format })
      end
      assert.are.equal(1, reads)
      -- Another image in its place: other size, other mtime.
      put("jpeg_33x17.jpg", 1700000100)
      local d = assert(images.resolve("vidu", path))
      assert.are.same({ 33, 17, "jpeg" }, { d.width, d.height, d.format })
      assert.are.equal(2, reads)
      -- The same bytes written again: same size, a new mtime, read again.
      put("jpeg_33x17.jpg", 1700000200)
      assert(images.resolve("vidu", path))
      assert.are.equal(3, reads)
      assert.are.equal(1700000200, assert(images.resolve("vidu", path)).mtime)
      assert.are.equal(3, reads)
      -- Gone: the error names the path, as before.
      os.remove(path)
      local none, why = images.resolve("vidu", path)
      assert.is_nil(none)
      assert.matches(path, tostring(why), 1, true)
    end)
    core.image_info_file = real
    assert(ok, err)
  end)
end)

describe("images.materialize", function()
  it("inlines files and bytes as data: URIs with the right type", function()
    for _, name in ipairs({ "png_33x17.png", "jpeg_33x17.jpg", "webp_33x17_lossy.webp" }) do
      local path = FIX .. name
      local bytes = read(path)
      local d = assert(images.resolve("vidu", path))
      local uri = assert(images.materialize(nil, "vidu", d))
      local mime, decoded = core.parse_data_uri(uri)
      assert.equal(d.mime, mime)
      assert.equal(bytes, decoded)
      local b = assert(images.resolve("vtrix", { data = bytes }))
      assert.equal(uri, assert(images.materialize(nil, "vtrix", b)))
    end
  end)

  it("returns URLs as they are and hands uploads to the uploader", function()
    local d = assert(images.resolve("relay", "https://example.com/a.png"))
    assert.equal("https://example.com/a.png", images.materialize(nil, "relay", d))
    local u = assert(images.resolve("fal", FIX .. "png_33x17.png"))
    local seen
    local url = images.materialize("client", "fal", u, function(client, desc)
      seen = { client, desc }
      return "https://cdn.example.com/x.png"
    end)
    assert.equal("https://cdn.example.com/x.png", url)
    assert.equal("client", seen[1])
    assert.equal(u, seen[2])
  end)

  it("reports a file that vanished between check and submit", function()
    local path = big_png(2000)
    local d = assert(images.resolve("vidu", path))
    os.remove(path)
    local uri, err = images.materialize(nil, "vidu", d)
    assert.is_nil(uri)
    assert.equal("image", err.kind)
  end)
end)
