--- 1,000 concurrent generations in one vidu.run against the offline emulator.
--
--   make bench    (or: $LUA bench/generations.lua [count] [seconds] [provider] [tuned])
--
-- The emulator runs as a child process with time-based progression: every task takes
-- `seconds` (default 10) from its creation. This process submits `count` (default 1000)
-- tasks at once through one client, waits for all of them and prints:
--   * wall time, and the client's CPU seconds (os.clock: this process only);
--   * peak RSS of this whole process (VmHWM from /proc/self/status);
--   * requests per generation (the client's own counter of every attempt, and the emulator's
--     request log as a cross-check);
--   * the delay between a task finishing on the emulator and the client knowing: for each
--     task, (time of its last poll, the one that saw it finished) - (its finish time),
--     both read from the emulator's clock (the log and the task's created_at), so the two
--     processes' clocks never get compared.
-- Targets: CPU <= 2 s, RSS <= 50 MB, <= 8 requests/generation, median delay <= 1 s.
--
-- The poll schedule is the provider's default (2 s backing off by 1.5 to 15 s, with jitter):
-- what keeps requests low and the delay short is the client's pace (vidu.pace), which
-- learns from the first tasks to finish and wakes the rest to look. `tuned` as the fourth
-- argument instead places the first poll by hand near the known duration, for comparison.
--
-- VIDU_BENCH_DURATIONS=lognormal gives every task its own duration instead, drawn from a
-- lognormal (VIDU_BENCH_MEDIAN, default 30 s; VIDU_BENCH_SIGMA, default 0.5; VIDU_BENCH_SEED,
-- default 1) with the same seeded generator as bench/compare/run.js, handed to the emulator one
-- per task through POST /_emulator/next (so `seconds` is then unused), and the same list for
-- every run: the measure of issue 10's "pace that fits real durations".
--
-- VIDU_BENCH_IMAGE=path submits that file (by path) instead of the 259-byte PNG fixture:
-- `make bench-photo` makes a 1080p JPEG of about 450 KB with ffmpeg and runs vidu (inline)
-- and fal (upload) with it, the measure of issue 10's "memory that does not grow with the
-- image". VIDU_BENCH_UPLOAD=0 or 1 passes `upload = false` or `true` with every submit;
-- unset, the client's default (an image sent more than once goes up once, where the provider
-- has an upload API), so bench-photo sets 0 for vidu to measure the inline path.
--
-- fal follows each task on its status stream (push instead of poll) up to the client's
-- max_streams; VIDU_BENCH_STREAM=0 turns that off (polling only, as before issue 10), and
-- VIDU_BENCH_MAX_STREAMS=n sets the bound. For fal, "known" is the result read (which the
-- client does at once when a poll or the stream says COMPLETED).
local vidu = require("vidu")
local core = require("vidu.core")
local json = require("vidu.json")

local COUNT = tonumber(arg[1]) or 1000
local SECONDS = tonumber(arg[2]) or 10
local PROVIDER = arg[3] or "vidu"
local LUA = os.getenv("VIDU_LUA") or "lua5.4"
local unpack = table.unpack or unpack
-- arg[4] = "tuned": a hand-placed first poll, for comparison with the defaults.
local TUNED = arg[4] == "tuned"
local POLL = TUNED and { first = SECONDS * 0.95, interval = 0.6, factor = 1.5, max = 15 } or nil

-- A blocking control call on a private engine (bookkeeping, outside the measured work).
local control_engine
local function control(url, method, path, body)
  control_engine = control_engine or core.engine{}
  local id = control_engine:request{ method = method, url = url .. path, timeout = 60,
    max_response = 512 * 1024 * 1024, body = body and json.encode(body),
    headers = body and { ["content-type"] = "application/json" } or nil }
  while true do
    for _, item in ipairs(control_engine:wait(100)) do
      if item.id == id then
        assert(item.ok and item.status == 200, "control " .. path .. " failed")
        return assert(json.decode(item.body))
      end
    end
  end
end

local function peak_rss_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

local function median(list)
  table.sort(list)
  local n = #list
  if n == 0 then return nil end
  if n % 2 == 1 then return list[(n + 1) / 2] end
  return (list[n / 2] + list[n / 2 + 1]) / 2
end

local function percentile(sorted, p)
  if #sorted == 0 then return nil end
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

-- bench/compare/run.js's generator (mulberry32, then Box-Muller), so both draw the same list.
local function seeded(seed)
  local a = seed % 4294967296
  local function imul(x, y) -- 32-bit multiply, as Math.imul, without integer arithmetic
    local xl, xh = x % 65536, math.floor(x / 65536)
    return (xl * y + ((xh * y) % 65536) * 65536) % 4294967296
  end
  local function xor(x, y)
    local r, bit = 0, 1
    while x > 0 or y > 0 do
      if x % 2 ~= y % 2 then r = r + bit end
      x, y, bit = math.floor(x / 2), math.floor(y / 2), bit * 2
    end
    return r
  end
  local function bor1(x) return x % 2 == 1 and x or x + 1 end
  local function bor61(x) -- x | 61
    local r, bit, m = 0, 1, 61
    while x > 0 or m > 0 do
      if x % 2 == 1 or m % 2 == 1 then r = r + bit end
      x, m, bit = math.floor(x / 2), math.floor(m / 2), bit * 2
    end
    return r
  end
  local function shr(x, n) return math.floor(x / 2 ^ n) end
  return function()
    a = (a + 0x6d2b79f5) % 4294967296
    local t = a
    t = imul(xor(t, shr(t, 15)), bor1(t))
    t = xor(t, (t + imul(xor(t, shr(t, 7)), bor61(t))) % 4294967296)
    return xor(t, shr(t, 14)) / 4294967296
  end
end

local LOGNORMAL = os.getenv("VIDU_BENCH_DURATIONS") == "lognormal"
local MEDIAN = tonumber(os.getenv("VIDU_BENCH_MEDIAN") or "") or 30
local SIGMA = tonumber(os.getenv("VIDU_BENCH_SIGMA") or "") or 0.5
local SEED = tonumber(os.getenv("VIDU_BENCH_SEED") or "") or 1
local durations
if LOGNORMAL then
  local rand = seeded(SEED)
  durations = {}
  for i = 1, COUNT do
    local u1 = rand()
    local z = math.sqrt(-2 * math.log(1 - u1)) * math.cos(2 * math.pi * rand())
    durations[i] = MEDIAN * math.exp(SIGMA * z)
  end
end

local emu = require("vidu.launch").start{
  lua = LUA, args = { "--no-ffmpeg" },
  -- Bodies are logged only in part: the emulator's memory is not what is measured.
  config = { progress = "time", seconds = SECONDS, log_limit = COUNT * 20 + 1000,
    log_body_limit = 256,
    -- fal's status stream: seconds between its events (the emulator's default 0.2)
    stream_interval = tonumber(os.getenv("VIDU_BENCH_STREAM_INTERVAL") or "") },
}
local url = emu.url
for _, d in ipairs(durations or {}) do control(url, "POST", "/_emulator/next", { seconds = d }) end
local IMAGE_PATH = os.getenv("VIDU_BENCH_IMAGE")
local image = IMAGE_PATH
  or { data = assert(io.open("spec/fixtures/png_33x17.png", "rb")):read("*a") }
local UPLOAD_ENV = os.getenv("VIDU_BENCH_UPLOAD")
local UPLOAD
if UPLOAD_ENV == "0" then UPLOAD = false elseif UPLOAD_ENV == "1" then UPLOAD = true end
local STREAM = os.getenv("VIDU_BENCH_STREAM") ~= "0"
local MAX_STREAMS = tonumber(os.getenv("VIDU_BENCH_MAX_STREAMS") or "")
local client = vidu.client(PROVIDER, { api_key = "bench-key", base_url = url, poll = POLL,
  stream = STREAM, max_streams = MAX_STREAMS })

local rss_before = peak_rss_kb()
local cpu0, wall0 = os.clock(), core.now()
local tasks, failures = {}, {}
vidu.run(function()
  for i = 1, COUNT do
    vidu.spawn(function()
      local task, err = client:submit{ image = image, prompt = "bench " .. i,
        seed = i, upload = UPLOAD }
      if not task then failures[#failures + 1] = tostring(err) return end
      tasks[#tasks + 1] = task
      local ok, werr = task:wait{ timeout = LOGNORMAL and MEDIAN * 20 or SECONDS * 10 }
      if not ok then failures[#failures + 1] = tostring(werr) end
    end)
  end
end)
local wall = core.now() - wall0
local cpu = os.clock() - cpu0
local rss = peak_rss_kb()
local counters = client:counters()

-- Bookkeeping from the emulator's side (not part of the measured work above).
local gets = control(url, "GET", "/_emulator/log?method=GET").requests
local posts = control(url, "GET", "/_emulator/log?method=POST").requests
local polls_by_path = {}
local function polled(path, time)
  local list = polls_by_path[path]
  if not list then list = {} polls_by_path[path] = list end
  list[#list + 1] = time
end
local lists = 0
for _, r in ipairs(gets) do
  if r.path == "/ent/v2/tasks" then
    -- Vidu's batched poll: a look at every task it names.
    lists = lists + 1
    for id in (r.query or ""):gmatch("task_ids%%5B%%5D=([^&]+)") do
      polled(string.format("/ent/v2/tasks/%s/creations", id), r.time)
    end
  else
    polled(r.path, r.time)
  end
end
-- The delay of each task: from the moment it was due to finish on the emulator (created +
-- seconds, the emulator's clock) to the first look at it after that (see below).
local finished = {}
-- With a photo the task list (each task keeps its input image) can be too large to fetch:
-- the delays are then not measured.
local got_tasks, task_list = pcall(control, url, "GET", "/_emulator/tasks?input=0")
for _, t in ipairs(got_tasks and task_list.tasks or {}) do
  finished[tostring(t.id)] = t.due_at
end
-- A request is about a task when a segment of its path is the task's id (every provider's
-- status and result paths), as bench/compare/run.js counts them; a Vidu task list counts as a
-- look at every id it names (polled above). A task is known from its first look at or after
-- its due time; a request's log time is its arrival and a task list of 100 is answered a
-- millisecond or so later, so a look up to 10 ms before the due time counts, as 0.
local known = {}
for path, list in pairs(polls_by_path) do
  for seg in path:gmatch("[^/]+") do
    local finish = finished[seg]
    if finish then
      for _, t in ipairs(list) do
        if t >= finish - 0.01 and (not known[seg] or t < known[seg]) then known[seg] = t end
      end
    end
  end
end
local delays = {}
for _, task in ipairs(tasks) do
  local finish, at = finished[task.id], known[task.id]
  if finish and at and task.status == "succeeded" then
    delays[#delays + 1] = math.max(0, at - finish)
  end
end
emu:stop()

local med = median(delays)
local p = client.poll
print(string.format("generations        %d of %d succeeded (%s, %s, poll first=%g" ..
  " interval=%s factor=%g max=%g%s)", #tasks - #failures, COUNT, PROVIDER, LOGNORMAL and
  string.format("lognormal durations: median %g s, sigma %g, seed %d, longest %.1f s", MEDIAN,
  SIGMA, SEED, math.max(unpack(durations))) or string.format("%g s each", SECONDS), p.first,
  tostring(p.interval), p.factor, p.max, TUNED and ", tuned by hand" or ", the provider's defaults"))
print(string.format("image              %s", IMAGE_PATH and string.format("%s, %d bytes",
  IMAGE_PATH, #assert(io.open(IMAGE_PATH, "rb")):read("*a")) or "spec/fixtures/png_33x17.png"
  .. " as { data = bytes }"))
do
  local st = require("vidu.images").cache_stats(client)
  print(string.format("image route        upload = %s; bodies that streamed it inline: %d,"
    .. " uploads: %d, uses of the upload's URL: %d", tostring(UPLOAD), st.streams, st.uploads,
    st.hits))
end
if PROVIDER == "fal" then
  print(string.format("status streams     %s, at most %d open (peak %d)", STREAM and "on" or "off",
    client.max_streams, counters.streams_peak))
end
print(string.format("wall time          %.2f s", wall))
print(string.format("client CPU         %.2f s          (target <= 2 s)", cpu))
print(string.format("peak RSS           %.1f MB         (target <= 50 MB; %.1f MB before the run)",
  (rss or 0) / 1024, (rss_before or 0) / 1024))
print(string.format("requests/gen       %.2f           (target <= 8; client counted %d," ..
  " emulator logged %d; retries %d; of them task lists %d)", counters.requests / COUNT,
  counters.requests, #gets + #posts, counters.retries, lists))
print(string.format("finish->known      median %.3f s, p90 %.3f s, max %.3f s over %d tasks" ..
  " (target median <= 1 s)", med or -1, percentile(delays, 0.9) or -1,
  delays[#delays] or -1, #delays))
if #failures > 0 then
  print("failures (first 3):")
  for i = 1, math.min(3, #failures) do print("  " .. failures[i]) end
end
