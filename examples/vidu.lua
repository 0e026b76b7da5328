--- One image to one video on Vidu's own API (api.vidu.com).
--
--   VIDU_API_KEY=... lua examples/vidu.lua [image] [out.mp4]
--   VIDU_BASE_URL=http://127.0.0.1:PORT lua examples/vidu.lua    -- against bin/vidu-emulator
--
-- Run from the project root with LUA_PATH/LUA_CPATH set as `make` sets them, or after
-- `luarocks make`.
local vidu = require("vidu")

local image = arg[1] or "spec/fixtures/astronaut.png"
local out = arg[2] or "vidu.mp4"
local base_url = os.getenv("VIDU_BASE_URL")          -- nil: the real api.vidu.com
local key = os.getenv("VIDU_API_KEY") or (base_url and "emulator-key")
if not key then
  io.stderr:write("set VIDU_API_KEY, or VIDU_BASE_URL to the emulator's URL\n")
  os.exit(2)
end

local function fail(err)
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

local client = vidu.client("vidu", { api_key = key, base_url = base_url })

vidu.run(function()
  local task, err = client:submit{
    image = image,                 -- a path (inline under 10 MB, uploaded above), a URL or data: URI
    prompt = "The astronaut waved and the camera moved up.",
    model = "viduq1", duration = 5, resolution = "1080p",
    movement_amplitude = "auto", seed = 42,
  }
  if not task then fail(err) end
  print(string.format("task %s submitted (%s credits)", task.id, tostring(task.cost)))
  local ok, werr = task:wait{
    timeout = 900,
    on_update = function(t) print("status: " .. t.status) end,
  }
  if not ok then fail(werr) end
  ok, werr = task:download(out)
  if not ok then fail(werr) end
  print(string.format("%s written (%s credits)", out, tostring(task.cost)))
end)
