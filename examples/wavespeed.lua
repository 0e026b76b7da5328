--- One image to one video on WaveSpeedAI (vidu/image-to-video-2.0).
--
--   WAVESPEED_API_KEY=... lua examples/wavespeed.lua [image] [out.mp4]
--   VIDU_BASE_URL=http://127.0.0.1:PORT lua examples/wavespeed.lua   -- against bin/vidu-emulator
--   WAVESPEED_SYNC=1 ...   -- sync mode: the submit waits for the video (polling if it runs long)
local vidu = require("vidu")

local image = arg[1] or "spec/fixtures/astronaut.png"
local out = arg[2] or "wavespeed.mp4"
local base_url = os.getenv("VIDU_BASE_URL")          -- nil: api.wavespeed.ai
local key = os.getenv("WAVESPEED_API_KEY") or (base_url and "emulator-key")
if not key then
  io.stderr:write("set WAVESPEED_API_KEY, or VIDU_BASE_URL to the emulator's URL\n")
  os.exit(2)
end

local function fail(err)
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

local client = vidu.client("wavespeed", { api_key = key, base_url = base_url })

vidu.run(function()
  local task, err = client:submit{
    image = image,
    prompt = "The astronaut waved and the camera moved up.",
    duration = 4, movement_amplitude = "auto", seed = -1,   -- -1: a random seed
    sync = os.getenv("WAVESPEED_SYNC") == "1",
  }
  if not task then fail(err) end
  print(string.format("prediction %s: %s", task.id, task.status))
  local ok, werr = task:wait{ timeout = 900, on_update = function(t) print("status: " .. t.status) end }
  if not ok then fail(werr) end
  ok, werr = task:download(out)
  if not ok then fail(werr) end
  print(out .. " written")
end)
