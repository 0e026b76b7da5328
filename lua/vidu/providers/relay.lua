--- Vidu-compatible gateways ("new-api" style gateways serving POST {base}/vidu/v2/img2video):
-- Vidu's body and answers passed through, Bearer auth, no default host (base_url is
-- required), no upload API (local images go inline), no cancel (none is documented), and
-- neither audio nor voice_id (no gateway page lists them). Their error envelope is not
-- documented: the parser stays lenient.
return require("vidu.providers.vidu_api").new{
  name = "relay",
  auth_scheme = "Bearer",
  prefix = "/vidu/v2",
  upload_prefix = nil,
  can_cancel = false,
  except = { audio = true, voice_id = true },
}
