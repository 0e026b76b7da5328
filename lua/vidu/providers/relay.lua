--- Vidu-compatible relays ("new-api" style gateways serving POST {base}/vidu/v2/img2video):
-- Vidu's body and answers passed through, Bearer auth, no default host (base_url is
-- required), no upload API (local images go inline) and no cancel (none is documented).
return require("vidu.providers.vidu_api").new{
  name = "relay",
  env_key = "VIDU_RELAY_API_KEY",
  default_base_url = nil,
  base_url_required = true,
  auth_scheme = "Bearer",
  prefix = "/vidu/v2",
  upload_prefix = nil,
  can_cancel = false,
}
