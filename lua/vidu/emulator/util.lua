--- Small helpers shared by the emulator's provider modules.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local uv = require("luv")

local M = {}

--- Wall-clock time as a float (seconds since the epoch).
function M.now()
  local s, us = uv.gettimeofday()
  return s + us / 1e6
end

--- RFC 3339 UTC time with microseconds, as Vidu writes it.
function M.iso_time(t)
  t = t or M.now()
  local s = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%06dZ", math.floor((t - s) * 1e6))
end

--- Monotonic time in seconds. Not uv.now(): the loop's cached time goes stale while one
-- iteration serves a burst of requests, and task progress must follow the real clock.
function M.mono()
  return uv.hrtime() / 1e9
end

--- The credential after `scheme` in the Authorization header -> key | nil, why.
-- why: "missing" (no header), "scheme" (another scheme), "empty".
function M.auth_key(req, scheme)
  local h = req.headers["authorization"]
  if not h or h == "" then return nil, "missing" end
  local s, key = h:match("^(%S+)%s+(.-)%s*$")
  if not s or s:lower() ~= scheme:lower() then return nil, "scheme" end
  if key == "" then return nil, "empty" end
  return key
end

--- Is `key` accepted for `provider`? Config `keys = { vidu = {"k1", ...} }` restricts the
-- accepted keys; without it any non-empty key is accepted.
function M.key_ok(config, provider, key)
  local keys = config.keys and config.keys[provider]
  if type(keys) ~= "table" then return true end
  for i = 1, #keys do
    if keys[i] == key then return true end
  end
  return false
end

--- The caller's API key for `provider` -> key | nil, why. why: "missing", "scheme", "empty"
-- (see auth_key) or "denied" (keys are configured and this one is not among them). Each
-- provider answers the refusal in its own shape.
function M.authorize(app, req, provider, scheme)
  local key, why = M.auth_key(req, scheme)
  if key and not M.key_ok(app.config, provider, key) then return nil, "denied" end
  return key, why
end

--- Is v an integer (a number with no fraction, or with `allow_string` a decimal string)?
function M.as_int(v, allow_string)
  if type(v) == "string" and allow_string and v:match("^%-?%d+$") then v = tonumber(v) end
  if type(v) ~= "number" or v ~= math.floor(v) then return nil end
  return v
end

--- Strict UTF-8 (RFC 3629) in plain Lua, for when vidu.core is not at hand (is_utf8 uses it).
function M.utf8_valid_lua(s)
  local byte, find = string.byte, string.find
  local i, n = 1, #s
  while i <= n do
    i = find(s, "[\128-\255]", i)
    if not i then return true end
    local c = byte(s, i)
    local len, lo, hi
    lo, hi = 0x80, 0xBF
    if c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then
      len = 3
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      len = 4
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    else
      return false
    end
    local b = byte(s, i + 1)
    if not b or b < lo or b > hi then return false end
    for k = 2, len - 1 do
      b = byte(s, i + k)
      if not b or b < 0x80 or b > 0xBF then return false end
    end
    i = i + len
  end
  return true
end

local has_core, core = pcall(require, "vidu.core")
if not has_core or type(core) ~= "table" or not core.utf8_len then core = nil end

--- Is s valid UTF-8? (what a JSON text must be)
function M.is_utf8(s)
  if core then return core.utf8_len(s) ~= nil end
  return M.utf8_valid_lua(s)
end

--- s as a JSON-safe string: unchanged when it is UTF-8, else every byte >= 0x80 written as the
-- four characters \xNN (for header values, paths and queries in the request log).
function M.json_text(s)
  if type(s) ~= "string" or M.is_utf8(s) then return s end
  return (s:gsub("[\128-\255]", function(ch) return string.format("\\x%02X", ch:byte()) end))
end

--- Shallow copy.
function M.copy(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

--- Member of a list?
function M.one_of(v, list)
  for i = 1, #list do
    if list[i] == v then return true end
  end
  return false
end

return M
