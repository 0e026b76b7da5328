--- The provider registry: the five providers, each with its name, the environment variable of
-- its key and its default host. The drivers, the examples, the demo and the emulator read
-- these entries instead of keeping copies.
--
--   local providers = require("vidu.providers")
--   for _, p in ipairs(providers.list) do print(p.name, p.env_key) end
--   local driver = providers.driver("vidu")
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local registry = {}

-- In the order the README and the demo present them. `default_base_url` nil: the user must
-- give one (a relay has no host of its own).
registry.list = {
  { name = "fal", env_key = "FAL_KEY", default_base_url = "https://queue.fal.run",
    title = "fal.ai queue API" },
  { name = "vidu", env_key = "VIDU_API_KEY", default_base_url = "https://api.vidu.com",
    title = "Vidu's own API (ent/v2)" },
  { name = "wavespeed", env_key = "WAVESPEED_API_KEY", default_base_url = "https://api.wavespeed.ai",
    title = "WaveSpeedAI API v3" },
  { name = "vtrix", env_key = "VTRIX_API_KEY", default_base_url = "https://cloud.vtrix.ai",
    title = "Vtrix (cloud.vtrix.ai)" },
  { name = "relay", env_key = "VIDU_RELAY_API_KEY", default_base_url = nil,
    title = "a Vidu-compatible gateway (/vidu/v2)" },
}

--- The provider names, in registry order.
registry.names = {}
for i, p in ipairs(registry.list) do
  registry.names[i] = p.name
  registry[p.name] = p
end

--- The registry entry of `name`, or nil.
function registry.get(name)
  local p = type(name) == "string" and registry[name] or nil
  return type(p) == "table" and p.env_key and p or nil
end

--- The driver module of a registered provider (raises for an unknown name).
function registry.driver(name)
  local p = registry.get(name)
  if not p then
    error(string.format("vidu: unknown provider %q (known: %s)", tostring(name),
      table.concat(registry.names, ", ")), 2)
  end
  return require("vidu.providers." .. p.name)
end

return registry
