--- fal.ai (fal-ai/vidu/q1/image-to-video) through its queue, and what is fal's own:
-- * a local image goes to fal's storage first (initiate, then PUT) and the model gets its URL;
--   that is fal's default, `upload = false` sends it inline instead (under 10 MB);
-- * on_update sees the queue position while queued, then the model's log lines;
-- * priority = "low" queues behind normal requests; fal_webhook = URL has fal POST the result
--   there as well;
-- * a request may be canceled while queued or running: here, when it runs past FAL_TIMEOUT.
--
--   FAL_KEY=... lua examples/fal.lua [image] [out.mp4]
--   VIDU_BASE_URL=http://127.0.0.1:PORT lua examples/fal.lua     -- against bin/vidu-emulator
--   FAL_TIMEOUT=1 FAL_WEBHOOK=https://example.com/hook ...        -- cancel; a webhook too
local vidu = require("vidu")

local emulator = os.getenv("VIDU_BASE_URL")
-- api_key nil: FAL_KEY from the environment. base_url replaces the queue and storage hosts.
local fal = vidu.client("fal", { base_url = emulator, api_key = emulator and "emulator-key" or nil })

vidu.run(function()
  local request = assert(fal:submit{
    image = arg[1] or "spec/fixtures/astronaut.png",
    prompt = "The astronaut waved and the camera moved up.",
    priority = "low",
    fal_webhook = os.getenv("FAL_WEBHOOK"),
  })
  print("request " .. request.id .. " (image uploaded to fal storage first)")

  local shown = 0
  local ok, err = request:wait{
    timeout = tonumber(os.getenv("FAL_TIMEOUT")) or 900,
    on_update = function(r)
      if r.queue_position then print("  queue position " .. r.queue_position) end
      local logs = r.logs or {}
      for i = shown + 1, #logs do print("  log: " .. tostring(logs[i].message)) end
      shown = #logs
    end,
  }
  if not ok and err.kind == "timeout" then
    -- Do not pay for a video nobody waits for; fal answers the cancel even mid-run.
    assert(request:cancel())
    local _, why = request:wait{ timeout = 60 }
    print("timed out; " .. tostring(why))   -- kind "canceled" once fal has stopped it
    return
  end
  assert(ok, err)
  assert(request:download(arg[2] or "fal.mp4"))
  print("saved " .. (arg[2] or "fal.mp4"))
end)
