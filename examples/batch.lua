--- A small concurrent batch: a grid of images x prompts, all submitted and waited at once on
-- one provider, each video downloaded as it finishes, then a summary.
--
--   VIDU_BASE_URL=http://127.0.0.1:PORT lua examples/batch.lua [provider] [outdir]
--   VIDU_API_KEY=... lua examples/batch.lua vidu out/        -- for real (6 paid videos!)
--
-- provider: fal, vidu, wavespeed, vtrix or relay (relay also needs VIDU_RELAY_BASE_URL).
local vidu = require("vidu")

local provider = arg[1] or "vidu"
local outdir = arg[2] or "batch-out"

local registry = require("vidu.providers")
local entry = registry.get(provider)
if not entry then
  io.stderr:write("unknown provider " .. provider .. " (" .. table.concat(registry.names, ", ") .. ")\n")
  os.exit(2)
end
local emulator = os.getenv("VIDU_BASE_URL")
local base_url = emulator or (provider == "relay" and os.getenv("VIDU_RELAY_BASE_URL")) or nil
local key = os.getenv(entry.env_key) or (emulator and "emulator-key")
if not key then
  io.stderr:write("set " .. entry.env_key .. ", or VIDU_BASE_URL to the emulator's URL\n")
  os.exit(2)
end

local images = { "spec/fixtures/astronaut.png", "spec/fixtures/png_640x360.png" }
local prompts = {
  "The astronaut waved and the camera moved up.",
  "A slow dolly in, soft morning light, dust drifting in the air.",
  "The camera orbits the scene as the wind picks up.",
}

os.execute("mkdir -p '" .. outdir:gsub("'", "'\\''") .. "'")
local client = vidu.client(provider, { api_key = key, base_url = base_url })

-- One cell of the grid: submit, wait, download. Returns the output path and the task.
local function cell(image, prompt, out)
  local task, err = client:submit{ image = image, prompt = prompt, movement_amplitude = "auto" }
  if not task then return nil, err end
  local ok, werr = task:wait{ timeout = 1200 }
  if not ok then return nil, werr end
  ok, werr = task:download(out)
  if not ok then return nil, werr end
  print(string.format("done: %s (task %s)", out, task.id))
  return out, task
end

local started = os.time()
vidu.run(function()
  local jobs, names = {}, {}
  for i, image in ipairs(images) do
    for j, prompt in ipairs(prompts) do
      local out = string.format("%s/%s-img%d-prompt%d.mp4", outdir, provider, i, j)
      names[#names + 1] = out
      jobs[#jobs + 1] = function() return cell(image, prompt, out) end
    end
  end
  local results, nfailed = vidu.gather(jobs)
  local cost, priced = 0, false
  print(string.format("\n%d videos, %d failed, %d s", #results, nfailed, os.time() - started))
  for i, r in ipairs(results) do
    if r.ok then
      local task = r[2]
      if type(task.cost) == "number" then cost, priced = cost + task.cost, true end
      print("  ok      " .. names[i])
    else
      print("  FAILED  " .. names[i] .. ": " .. tostring(r.err))
    end
  end
  if priced then
    print(string.format("total cost: %g (%s)", cost,
      (provider == "vtrix") and "USD" or "credits"))
  end
  if nfailed > 0 then os.exit(1) end
end)
