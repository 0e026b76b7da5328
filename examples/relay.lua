--- One image to one video through a Vidu-compatible relay (POST {base}/vidu/v2/img2video).
--
--   VIDU_RELAY_API_KEY=... VIDU_RELAY_BASE_URL=https://relay.example lua examples/relay.lua [image] [out.mp4]
--   VIDU_BASE_URL=http://127.0.0.1:PORT lua examples/relay.lua   -- against bin/vidu-emulator
--
-- A relay has no default host, so a base URL is required. It has no upload API: local images
-- go inline (under 10 MB); pass an http(s) URL for larger ones.
local vidu = require("vidu")

local image = arg[1] or "spec/fixtures/astronaut.png"
local out = arg[2] or "relay.mp4"
local base_url = os.getenv("VIDU_RELAY_BASE_URL") or os.getenv("VIDU_BASE_URL")
local key = os.getenv("VIDU_RELAY_API_KEY") or (os.getenv("VIDU_BASE_URL") and "emulator-key")
if not base_url or not key then
  io.stderr:write("set VIDU_RELAY_BASE_URL and VIDU_RELAY_API_KEY, or VIDU_BASE_URL to the emulator's URL\n")
  os.exit(2)
end

local function fail(err)
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

local client = vidu.client("relay", { api_key = key, base_url = base_url })

vidu.run(function()
  local task, err = client:submit{
    image = image,
    prompt = "The astronaut waved and the camera moved up.",
    model = "viduq2-pro", duration = 5, resolution = "720p", movement_amplitude = "auto",
  }
  if not task then fail(err) end
  print("task " .. task.id .. " submitted")
  local ok, werr = task:wait{ timeout = 900, on_update = function(t) print("status: " .. t.status) end }
  if not ok then fail(werr) end
  ok, werr = task:download(out)
  if not ok then fail(werr) end
  print(string.format("%s written (%s credits)", out, tostring(task.cost)))
end)
