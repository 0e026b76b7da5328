--- WaveSpeedAI (vidu/image-to-video-2.0), and what is WaveSpeed's own: sync mode. With
-- `sync = true` the submit itself waits for the video, so most tasks come back finished from
-- client:submit. When the generation outlasts WaveSpeed's sync window the answer is still
-- "processing", and the task is polled like any other: task:wait covers both cases.
-- (Also: 4 or 8 s, seed -1 for a random one, `webhook = URL`; local images over 10 MB go
-- through WaveSpeed's media upload.)
--
--   WAVESPEED_API_KEY=... lua examples/wavespeed.lua [image] [out.mp4]
--   VIDU_BASE_URL=http://127.0.0.1:PORT lua examples/wavespeed.lua   -- against bin/vidu-emulator
local vidu = require("vidu")

local base_url = os.getenv("VIDU_BASE_URL")   -- the emulator takes any key
local ws = vidu.client("wavespeed", { base_url = base_url, api_key = base_url and "any" or nil })
local out = arg[2] or "wavespeed.mp4"

vidu.run(function()
  local started = os.time()
  local prediction = assert(ws:submit{
    image = arg[1] or "spec/fixtures/astronaut.png",
    prompt = "The astronaut waved and the camera moved up.",
    duration = 4, seed = -1,
    sync = true,
  })
  if prediction:done() then
    print(string.format("sync: %s came back %s after %d s", prediction.id, prediction.status,
      os.time() - started))
  else
    print("sync window passed (" .. prediction.status .. "): polling " .. prediction.id)
  end
  assert(prediction:wait{ timeout = 900 })   -- at once when the submit already finished it
  assert(prediction:download(out))
  print("saved " .. out)
end)
