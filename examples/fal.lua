--- One image to one video on fal.ai (fal-ai/vidu/q1/image-to-video through the queue).
--
--   FAL_KEY=... lua examples/fal.lua [image] [out.mp4]
--   VIDU_BASE_URL=http://127.0.0.1:PORT lua examples/fal.lua     -- against bin/vidu-emulator
--
-- A local image is uploaded to fal's storage first; queue position and the model's logs
-- arrive through on_update.
local vidu = require("vidu")

local image = arg[1] or "spec/fixtures/astronaut.png"
local out = arg[2] or "fal.mp4"
local base_url = os.getenv("VIDU_BASE_URL")          -- nil: queue.fal.run and rest.fal.ai
local key = os.getenv("FAL_KEY") or (base_url and "emulator-key")
if not key then
  io.stderr:write("set FAL_KEY, or VIDU_BASE_URL to the emulator's URL\n")
  os.exit(2)
end

local function fail(err)
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

local client = vidu.client("fal", { api_key = key, base_url = base_url })

vidu.run(function()
  local task, err = client:submit{
    image = image,
    prompt = "The astronaut waved and the camera moved up.",
    movement_amplitude = "auto", seed = 42,
    -- model = "fal-ai/vidu/q1/image-to-video", priority = "normal", start_timeout = 600,
  }
  if not task then fail(err) end
  print("request " .. task.id .. " queued")
  local seen_logs = 0
  local ok, werr = task:wait{
    timeout = 900,
    on_update = function(t)
      if t.status == "queued" and t.queue_position then
        print("in queue, position " .. t.queue_position)
      else
        print("status: " .. t.status)
      end
      local logs = t.logs or {}
      for i = seen_logs + 1, #logs do print("  log: " .. tostring(logs[i].message)) end
      seen_logs = #logs
    end,
  }
  if not ok then fail(werr) end
  ok, werr = task:download(out)
  if not ok then fail(werr) end
  print(out .. " written")
end)
