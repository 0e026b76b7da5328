--- Vidu's own API (api.vidu.com), and what is Vidu's own:
-- * the model decides the durations and resolutions on offer; a pair it does not make is
--   refused before anything is sent (error kind "invalid", naming the field and the limit):
--       viduq1              5 s at 1080p
--       vidu2.0, vidu1.5    4 s at 360p, 720p or 1080p; 8 s at 720p only
-- * the price comes back in credits, as task.cost, from the submit answer on;
-- * each video has a cover image (task.cover_url), downloaded here beside it;
-- * a task can be canceled while it waits in the queue: here when it is still queued after
--   VIDU_TIMEOUT seconds (cancel_on_timeout).
--
--   VIDU_API_KEY=... lua examples/vidu.lua [model] [duration] [resolution]   (vidu2.0 8 720p)
--   VIDU_BASE_URL=http://127.0.0.1:PORT lua examples/vidu.lua ...   -- against bin/vidu-emulator
local vidu = require("vidu")

local model, duration, resolution = arg[1] or "vidu2.0", tonumber(arg[2] or 8), arg[3] or "720p"
local emulator = os.getenv("VIDU_BASE_URL")     -- any key will do there; else VIDU_API_KEY
local client = vidu.client("vidu", { base_url = emulator, api_key = emulator and "emulator-key" or nil })

local task, err = vidu.run(function()
  local t, serr = client:submit{
    image = "spec/fixtures/astronaut.png",
    prompt = "The astronaut waved and the camera moved up.",
    model = model, duration = duration, resolution = resolution,
  }
  if not t then return nil, serr end
  print(string.format("%s: %d s at %s, %s credits", t.id, duration, resolution, tostring(t.cost)))
  local ok, werr = t:wait{ timeout = tonumber(os.getenv("VIDU_TIMEOUT")) or 900, cancel_on_timeout = true }
  if not ok then return nil, werr end
  local name = model .. "-" .. duration .. "s"
  assert(t:download(name .. ".mp4"))
  assert(t:download(name .. ".jpg", { url = t.cover_url }))
  print("saved " .. name .. ".mp4 and its cover " .. name .. ".jpg")
  return t
end)
if not task then
  io.stderr:write(tostring(err), "\n")   -- e.g. "invalid (field resolution): ... allowed: 720p"
  os.exit(1)
end
