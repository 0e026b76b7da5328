--- A new-api style relay that passes Vidu's body through: /vidu/v2/img2video and
-- /vidu/v2/tasks/{id}/creations with Bearer auth (auth errors in the relay's own
-- {"error":{message,type,code}} shape, everything else as Vidu answers). No cancel.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local vidu = require("vidu.emulator.providers.vidu")

return vidu.make{ name = "relay", base = "/vidu/v2", scheme = "Bearer", rules = vidu.models.relay,
  cancel = false, uploads = false, auth_style = "newapi", prefixes = { "/vidu/" } }
