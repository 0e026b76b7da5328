--- Image inputs as the providers see them: data URIs, base64, and the header of PNG, JPEG and
-- WebP files (format and pixel size). Pure Lua so the emulator runs without the C core; when
-- vidu.core is loadable its base64 decoder is used for speed.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local M = {}

local has_core, core = pcall(require, "vidu.core")
if not has_core or type(core) ~= "table" or not core.b64decode then core = nil end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local DEC = {}
for i = 1, 64 do DEC[B64:sub(i, i)] = i - 1 end

local char, floor = string.char, math.floor

local function decode_quad(q)
  local a, b, c, d = DEC[q:sub(1, 1)], DEC[q:sub(2, 2)], DEC[q:sub(3, 3)], DEC[q:sub(4, 4)]
  local n = a * 262144 + b * 4096 + (c or 0) * 64 + (d or 0)
  local x, y, z = floor(n / 65536), floor(n / 256) % 256, n % 256
  if not c then return char(x) end
  if not d then return char(x, y) end
  return char(x, y, z)
end

--- Strict base64 decode (padding required) -> bytes | nil, err.
function M.b64decode(s)
  if core then return core.b64decode(s) end
  if #s % 4 ~= 0 then return nil, "invalid base64 length" end
  local bad = s:find("[^A-Za-z0-9+/=]")
  if bad then return nil, "invalid base64 at byte " .. bad end
  local pad = s:find("=", 1, true)
  if pad and (pad < #s - 1 or s:sub(pad):find("[^=]")) then
    return nil, "invalid base64 at byte " .. pad
  end
  local body = s:gsub("=", "")
  local out = body:gsub("....", decode_quad)
  local rest = #body % 4
  if rest == 1 then return nil, "invalid base64 length" end
  if rest > 0 then
    local tail = body:sub(#body - rest + 1)
    out = out:sub(1, #out - rest) .. decode_quad(tail)
  end
  return out
end

local ENC = {}
for i = 1, 64 do ENC[i - 1] = B64:sub(i, i) end

--- Base64 encode.
function M.b64encode(s)
  if core and core.b64encode then return core.b64encode(s) end
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q1, q2 = floor(n / 262144), floor(n / 4096) % 64
    local q3, q4 = floor(n / 64) % 64, n % 64
    out[#out + 1] = ENC[q1] .. ENC[q2] .. (b and ENC[q3] or "=") .. (c and ENC[q4] or "=")
  end
  return table.concat(out)
end

--- Base64url without padding (JWK style).
function M.b64url(s)
  return (M.b64encode(s):gsub("+", "-"):gsub("/", "_"):gsub("=", ""))
end

--- Parse a data URI -> mime, bytes | nil, err ("not a data URI", "missing content type", ...).
function M.parse_data_uri(uri)
  if uri:sub(1, 5) ~= "data:" then return nil, "not a data URI" end
  local comma = uri:find(",", 6, true)
  if not comma then return nil, "data URI without a comma" end
  local meta = uri:sub(6, comma - 1)
  if not meta:find(";base64$") then return nil, "data URI is not base64" end
  local mime = meta:match("^([%w%-%.%+]+/[%w%-%.%+]+)")
  if not mime then return nil, "data URI without a content type" end
  local bytes, err = M.b64decode(uri:sub(comma + 1))
  if not bytes then return nil, err end
  return mime:lower(), bytes
end

--- Size in bytes a base64 payload decodes to (without decoding it).
function M.decoded_len(payload_len, tail)
  local pad = 0
  if tail and tail:sub(-2) == "==" then pad = 2 elseif tail and tail:sub(-1) == "=" then pad = 1 end
  return floor(payload_len / 4) * 3 - pad
end

local function u16be(s, i) local a, b = s:byte(i, i + 1); return a * 256 + b end
local function u32be(s, i) local a, b, c, d = s:byte(i, i + 3); return ((a * 256 + b) * 256 + c) * 256 + d end
local function u16le(s, i) local a, b = s:byte(i, i + 1); return b * 256 + a end
local function u24le(s, i) local a, b, c = s:byte(i, i + 2); return (c * 256 + b) * 256 + a end

local function png_info(s)
  if #s < 24 or s:sub(13, 16) ~= "IHDR" then return nil, "truncated PNG header" end
  return { format = "png", mime = "image/png", width = u32be(s, 17), height = u32be(s, 21) }
end

local function jpeg_info(s)
  local i, n = 3, #s
  while i + 3 <= n do
    if s:byte(i) ~= 0xFF then return nil, "corrupt JPEG: marker expected" end
    local m = s:byte(i + 1)
    if m == 0xFF then
      i = i + 1
    elseif m == 0xD8 or (m >= 0xD0 and m <= 0xD7) or m == 0x01 then
      i = i + 2
    else
      local len = u16be(s, i + 2)
      if len < 2 then return nil, "corrupt JPEG: bad segment length" end
      if m >= 0xC0 and m <= 0xCF and m ~= 0xC4 and m ~= 0xC8 and m ~= 0xCC then
        if i + 8 > n then return nil, "truncated JPEG header" end
        return { format = "jpeg", mime = "image/jpeg", height = u16be(s, i + 5), width = u16be(s, i + 7) }
      end
      if m == 0xD9 or m == 0xDA then return nil, "corrupt JPEG: no frame header" end
      i = i + 2 + len
    end
  end
  return nil, "truncated JPEG header"
end

local function webp_info(s)
  local kind = s:sub(13, 16)
  if kind == "VP8 " and #s >= 30 then
    if s:sub(24, 26) ~= "\157\001\042" then return nil, "corrupt WebP: bad VP8 frame" end
    return { format = "webp", mime = "image/webp",
      width = u16le(s, 27) % 16384, height = u16le(s, 29) % 16384 }
  elseif kind == "VP8L" and #s >= 25 then
    if s:byte(21) ~= 0x2F then return nil, "corrupt WebP: bad VP8L signature" end
    local b1, b2, b3, b4 = s:byte(22, 25)
    local w = 1 + b1 + (b2 % 64) * 256
    local h = 1 + floor(b2 / 64) + b3 * 4 + (b4 % 16) * 1024
    return { format = "webp", mime = "image/webp", width = w, height = h }
  elseif kind == "VP8X" and #s >= 30 then
    return { format = "webp", mime = "image/webp", width = 1 + u24le(s, 25), height = 1 + u24le(s, 28) }
  end
  return nil, "truncated WebP header"
end

--- Image format and pixel size from its first bytes -> info | nil, err.
function M.info(s)
  if type(s) ~= "string" or #s < 12 then return nil, "unknown image format" end
  if s:sub(1, 8) == "\137PNG\r\n\026\n" then return png_info(s) end
  if s:sub(1, 3) == "\255\216\255" then return jpeg_info(s) end
  if s:sub(1, 4) == "RIFF" and s:sub(9, 12) == "WEBP" then return webp_info(s) end
  return nil, "unknown image format"
end

--- Number of UTF-8 characters (lenient: counts lead bytes).
function M.char_len(s)
  local _, n = s:gsub("[^\128-\191]", "")
  return n
end

--- A cheap content fingerprint (not cryptographic): length plus a checksum of sampled blocks.
function M.fingerprint(s)
  local h, n = 7, #s
  local step = 1
  if n > 262144 then step = floor(n / 65536) end
  for i = 1, n, step * 64 do
    local a, b, c, d = s:byte(i, i + 3)
    h = (h * 31 + (a or 0) * 16777216 + (b or 0) * 65536 + (c or 0) * 256 + (d or 0)) % 4294967291
  end
  for i = 1, math.min(n, 4096) do
    h = (h * 33 + s:byte(i)) % 4294967291
  end
  return string.format("%x%08x", n, h)
end

return M
