--- Vtrix (viduq1_img2video), and what is Vtrix's own: each poll reports how far the video
-- is (task.progress, 0 to 1), drawn here as a bar, and the finished task carries its price
-- in USD (usage.cost, as task.cost). Vtrix has no upload API and no cancel: local images go
-- inline (the request stays under 20 MB; give an http(s) URL for larger ones), and
-- task:cancel() answers an error of kind "unsupported".
--
--   VTRIX_API_KEY=... lua examples/vtrix.lua [image] [out.mp4]
--   VIDU_BASE_URL=http://127.0.0.1:PORT lua examples/vtrix.lua   -- against bin/vidu-emulator
local vidu = require("vidu")

local url = os.getenv("VIDU_BASE_URL")
local vtrix = vidu.client("vtrix", url and { base_url = url, api_key = "emulator" } or {})

local function bar(fraction)
  local n = math.floor((fraction or 0) * 20 + 0.5)
  return "[" .. string.rep("#", n) .. string.rep(".", 20 - n) .. "]"
end

vidu.run(function()
  local job = assert(vtrix:submit{
    image = arg[1] or "spec/fixtures/astronaut.png",
    prompt = "The astronaut waved and the camera moved up.",
  })
  assert(job:wait{
    timeout = 900,
    on_update = function(t)
      io.write(string.format("\r%s %3d%% %-9s", bar(t.progress), math.floor((t.progress or 0) * 100),
        t.status))
      io.flush()
    end,
  })
  print("\ndone: " .. job.id .. ", cost " .. tostring(job.cost) .. " USD")
  local out = arg[2] or "vtrix.mp4"
  assert(job:download(out))
  print("saved " .. out)
end)
