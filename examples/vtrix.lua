--- One image to one video on Vtrix (viduq1_img2video).
--
--   VTRIX_API_KEY=... lua examples/vtrix.lua [image] [out.mp4]
--   VIDU_BASE_URL=http://127.0.0.1:PORT lua examples/vtrix.lua   -- against bin/vidu-emulator
--
-- Vtrix has no upload API: local images go inline (the whole request stays under 20 MB);
-- pass an http(s) URL for larger ones. task.cost is the price in USD.
local vidu = require("vidu")

local image = arg[1] or "spec/fixtures/astronaut.png"
local out = arg[2] or "vtrix.mp4"
local base_url = os.getenv("VIDU_BASE_URL")          -- nil: cloud.vtrix.ai
local key = os.getenv("VTRIX_API_KEY") or (base_url and "emulator-key")
if not key then
  io.stderr:write("set VTRIX_API_KEY, or VIDU_BASE_URL to the emulator's URL\n")
  os.exit(2)
end

local function fail(err)
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

local client = vidu.client("vtrix", { api_key = key, base_url = base_url })

vidu.run(function()
  local task, err = client:submit{
    image = image,
    prompt = "The astronaut waved and the camera moved up.",
    duration = 5, resolution = "1080p", movement_amplitude = "auto", bgm = false,
  }
  if not task then fail(err) end
  print("task " .. task.id .. " submitted")
  local ok, werr = task:wait{
    timeout = 900,
    on_update = function(t)
      local pct = t.progress and string.format(" (%d%%)", math.floor(t.progress * 100)) or ""
      print("status: " .. t.status .. pct)
    end,
  }
  if not ok then fail(werr) end
  ok, werr = task:download(out)
  if not ok then fail(werr) end
  print(string.format("%s written, cost $%s", out, tostring(task.cost)))
end)
