-- The main job: one image and a prompt in, one MP4 out.
--
--   make demo                                   -- against the offline emulator, no key needed
--   FAL_KEY=... lua5.4 examples/demo.lua fal    -- the same script, for real (any provider
--                                               -- whose key is in the environment)
--
-- Arguments: [provider] [image] [output]. Without the provider's key in the environment (or
-- with VIDU_BASE_URL set) it talks to bin/vidu-emulator, started here on a free loopback port.
local vidu = require("vidu")

local provider = arg[1] or os.getenv("VIDU_PROVIDER") or "vidu"
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local image = arg[2] or (here .. "/../spec/fixtures/astronaut.png")
local output = arg[3] or "out/demo-" .. provider .. ".mp4"

local registry = require("vidu.providers")
local entry = registry.get(provider)
if not entry then
  io.stderr:write("unknown provider '", provider, "' (", table.concat(registry.names, ", "), ")\n")
  os.exit(2)
end

local opts, stop = {}, function() end
local base_url = os.getenv("VIDU_BASE_URL")
local key = os.getenv(entry.env_key)
if key == "" then key = nil end -- set but empty counts as unset
if base_url then
  opts.base_url, opts.api_key = base_url, key or "demo"
elseif not key then
  local emu = require("vidu.launch").start()
  opts.base_url, opts.api_key = emu.url, "demo"
  stop = function() emu:stop() end
  print("no " .. entry.env_key .. " set: using the offline emulator at " .. opts.base_url)
end
if provider == "relay" and not opts.base_url then
  opts.base_url = os.getenv("VIDU_RELAY_BASE_URL")
end

os.execute("mkdir -p '" .. (output:match("^(.*)/[^/]*$") or ".") .. "'")

local ok, result, failure = pcall(vidu.run, function()
  local client = vidu.client(provider, opts)
  local task, err = client:submit{
    image = image,
    prompt = "The astronaut waved and the camera moved up.",
    seed = 42,
    movement_amplitude = "auto",
  }
  if not task then return nil, err end
  print(("submitted %s task %s"):format(provider, task.id))

  local last
  local done, werr = task:wait{
    timeout = 900,
    on_update = function(t)
      local line = t.status .. (t.queue_position and (" (queue position " .. t.queue_position .. ")") or "")
      if line ~= last then print("  " .. line); last = line end
    end,
  }
  if not done then return nil, werr end

  local saved, derr = task:download(output, {
    on_progress = function(now, total)
      if total and total > 0 then
        io.write(("\r  downloading %3d%%"):format(math.floor(now * 100 / total)))
      end
    end,
  })
  io.write("\n")
  if not saved then return nil, derr end
  return task
end)
stop()

if not ok then error(result, 0) end
if not result then
  io.stderr:write("demo failed: ", tostring(failure), "\n")
  os.exit(1)
end
print(("saved %s (%s)"):format(output, result.video_url))
