--- A Vidu-compatible relay (a gateway serving POST {base}/vidu/v2/img2video with Vidu's body
-- and answers), and what is a relay's own:
-- * there is no default host: base_url is required (vidu.client raises without it);
-- * relays offer Vidu's newer models beside Vidu's own table: viduq2-pro and viduq2-turbo
--   make 1 to 10 s at 540p, 720p or 1080p, with prompts up to 2000 characters;
-- * no upload API (local images go inline, under 10 MB) and no cancel.
--
--   VIDU_RELAY_BASE_URL=https://relay.example VIDU_RELAY_API_KEY=... \
--     lua examples/relay.lua [model] [seconds] [resolution]      (viduq2-turbo 6 540p)
--   VIDU_BASE_URL=http://127.0.0.1:PORT lua examples/relay.lua   -- against bin/vidu-emulator
local vidu = require("vidu")

local emulator = os.getenv("VIDU_BASE_URL")
local relay = vidu.client("relay", {
  base_url = emulator or os.getenv("VIDU_RELAY_BASE_URL"),
  api_key = emulator and "emulator-key" or nil,      -- nil: VIDU_RELAY_API_KEY
})

local model, seconds, resolution = arg[1] or "viduq2-turbo", tonumber(arg[2]) or 6, arg[3] or "540p"
local out = string.format("relay-%s-%ds-%s.mp4", model, seconds, resolution)

vidu.run(function()
  local task = assert(relay:submit{
    image = "spec/fixtures/astronaut.png",
    prompt = "The astronaut waved and the camera moved up, slowly, as the light faded.",
    model = model, duration = seconds, resolution = resolution,
  })
  print(task.id .. ": " .. model .. ", " .. seconds .. " s at " .. resolution)
  assert(task:wait{ timeout = 900 })
  assert(task:download(out))
  print("saved " .. out .. " (" .. tostring(task.cost) .. " credits)")
end)
