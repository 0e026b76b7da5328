-- bench/b64.lua: base64 throughput over one 50 MB buffer, with what to compare it to.
--
--   1. C level (bench/b64_bench.c, built here with cc and the project's -O2 against the same
--      csrc/b64.c and csrc/util.c): memcpy, then encode and decode with each implementation
--      the CPU has.
--   2. Lua level: the same work through vidu.core (b64encode, b64decode, data_uri_file), which
--      adds making the Lua string: one copy into freshly allocated memory. A Lua string copy
--      of the same size is printed beside it as that part's own cost.
--   3. coreutils `base64` on the same data in a file (page cache; includes process start).
--
-- GB/s are of binary data (50 MB = 50e6 bytes), encode and decode alike; best of several runs.
-- Usage: make bench  (or: lua bench/b64.lua [MB])
local core = require("vidu.core")

local MB = tonumber(arg and arg[1]) or 50
local N = MB * 1000 * 1000
local RUNS = 5

local function sh_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- os.execute's success, on Lua 5.1 (status number) and 5.2+ (true/nil).
local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local function gbps(bytes, seconds)
  return bytes / seconds / 1e9
end

local function line(what, seconds, bytes)
  print(string.format("  %-28s %8.2f ms  %6.2f GB/s", what, seconds * 1e3, gbps(bytes or N, seconds)))
end

-- Best wall time of `runs` calls of f, each after a full GC (outside the timing), so that
-- garbage from one run does not slow the next, and no result is still alive: LuaJIT interns
-- equal strings, and would skip allocating a result equal to a live string.
local function best_of(runs, f)
  local best = math.huge
  for r = 1, runs do
    collectgarbage("collect")
    collectgarbage("collect")
    local t = core.now()
    f(r)
    t = core.now() - t
    if t < best then best = t end
  end
  return best
end

-- 1. C level -------------------------------------------------------------------------------
local cc = os.getenv("CC") or "cc"
local exe = "build/bench/b64_bench"
assert(run("mkdir -p build/bench"))
local build = table.concat({
  cc, "-std=c99 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -pedantic -DVIDU_B64_NO_LUA",
  "-DVIDU_UTIL_NO_LUA -Icsrc bench/b64_bench.c csrc/b64.c csrc/util.c -o", exe,
}, " ")
if not run(build) then error("bench/b64.lua: could not build " .. exe .. " with: " .. build) end
io.stdout:flush()
if not run(exe .. " " .. MB .. " 10") then error("bench/b64.lua: " .. exe .. " failed") end

-- 2. Lua level -----------------------------------------------------------------------------
math.randomseed(1)
local block = {}
for i = 1, 65536 do block[i] = string.char(math.random(0, 255)) end
block = table.concat(block)
local data = block:rep(math.ceil(N / #block)):sub(1, N)
-- A PNG signature in front, so data_uri_file can tell the mime type.
data = "\137PNG\r\n\26\n" .. data:sub(9)

print(string.format("Lua level (%s), through vidu.core, best of %d:", _VERSION ..
  (jit and (" / " .. jit.version) or ""), RUNS))
local M = 4 * math.ceil(N / 3)
local tmp = os.tmpname()
local tmp64 = tmp .. ".b64"
local f = assert(io.open(tmp, "wb"))
f:write(data)
f:close()

-- What making a fresh Lua string of each size costs by itself (a copy into new memory).
line("Lua string copy, input size", best_of(RUNS, function(r) local _ = data:sub(1 + r) end))
local text = core.b64encode(data)
line(string.format("Lua string copy, %.1f MB", M / 1e6), best_of(RUNS, function(r)
  local _ = text:sub(1 + r)
end))
text = nil

local impls = { "auto" }
if core.b64_impl("auto") ~= "scalar" then impls[#impls + 1] = "scalar" end
for _, impl in ipairs(impls) do
  local name = core.b64_impl(impl)
  line("b64encode (" .. name .. ")", best_of(RUNS, function() local _ = core.b64encode(data) end))
end
core.b64_impl("auto")
line("data_uri_file", best_of(RUNS, function() assert(core.data_uri_file(tmp)) end))

-- Decode with the original dropped, for the same reason as in best_of.
text = core.b64encode(data)
local head = data:sub(1, 4096)
data = nil
f = assert(io.open(tmp64, "wb"))
f:write(text)
f:close()
for _, impl in ipairs(impls) do
  local name = core.b64_impl(impl)
  line("b64decode (" .. name .. ")", best_of(RUNS, function()
    local d = core.b64decode(text)
    assert(#d == N and d:sub(1, 4096) == head)
  end))
end
core.b64_impl("auto")
text = nil

-- 3. coreutils -----------------------------------------------------------------------------
if run("command -v base64 >/dev/null 2>&1") then
  print("coreutils base64 on the same data (file in page cache, process start included):")
  line("base64 -w0 (encode)", best_of(3, function()
    assert(run("base64 -w0 " .. sh_quote(tmp) .. " >/dev/null"))
  end))
  line("base64 -d (decode)", best_of(3, function()
    assert(run("base64 -d " .. sh_quote(tmp64) .. " >/dev/null"))
  end))
else
  print("coreutils base64: not found, skipped")
end
os.remove(tmp)
os.remove(tmp64)
