--- make bench-compare: lua-vidu's side. N concurrent generations of one image through one
-- client in one vidu.run, at the client's defaults; prints one JSON line: wall and CPU seconds
-- (os.clock: this process), peak RSS (VmHWM), generations ok and failed, the first error.
--
--   lua_client.lua PROVIDER BASE_URL N IMAGE_PATH API_KEY
-- VIDU_BENCH_STREAM=0 turns fal's status streams off (polling only); VIDU_BENCH_MAX_STREAMS=n
-- sets the client's bound on open streams (default 256).
local vidu = require("vidu")
local core = require("vidu.core")
local json = require("vidu.json")

local provider, base_url, n, image, key = arg[1], arg[2], tonumber(arg[3]), arg[4], arg[5]

local function peak_rss_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return 0 end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)")) or 0
end

-- VIDU_BENCH_STREAM=0: fal polls instead of following its status stream (as before issue 10).
local client = vidu.client(provider, { api_key = key, base_url = base_url,
  stream = os.getenv("VIDU_BENCH_STREAM") ~= "0",
  max_streams = tonumber(os.getenv("VIDU_BENCH_MAX_STREAMS")) })
local ok, failed, first_error = 0, 0, nil
local cpu0, wall0 = os.clock(), core.now()
vidu.run(function()
  for i = 1, n do
    vidu.spawn(function()
      local task, err = client:submit{ image = image, prompt = "bench-compare " .. i, seed = i }
      if task then task, err = task:wait{ timeout = 3600 } end
      if task then ok = ok + 1 else
        failed = failed + 1
        first_error = first_error or tostring(err)
      end
    end)
  end
end)
print(json.encode{ wall = core.now() - wall0, cpu = os.clock() - cpu0, rss_kb = peak_rss_kb(),
  ok = ok, failed = failed, error = first_error })
