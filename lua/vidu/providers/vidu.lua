--- Vidu's own API (api.vidu.com, "ent/v2"): Token auth, uploads through /tools/v2/files,
-- cancel through POST /ent/v2/tasks/{id}/cancel, many polls in one GET /ent/v2/tasks. The
-- protocol lives in vidu_api.lua, shared with Vidu-compatible gateways.
return require("vidu.providers.vidu_api").new{
  name = "vidu",
  auth_scheme = "Token",
  prefix = "/ent/v2",
  upload_prefix = "/tools/v2",
  can_cancel = true,
  list = true,
}
