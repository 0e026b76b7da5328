--- The raw-bytes PUT endpoint behind every provider's pre-signed upload URL
-- (PUT /media/put/{id}?...), shared by fal, Vidu and WaveSpeed. The bytes become readable at
-- /media/u/{id}[/{name}].
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local image = require("vidu.emulator.image")

local M = {}

--- A new upload slot -> id, put_url. meta: content_type, name, provider.
function M.reserve(app, meta)
  local id = app:new_id("hex", 24)
  app.media:reserve_upload(id, meta)
  local sig = app:new_id("hex", 64)
  return id, app.url .. "/media/put/" .. id .. "?X-Amz-Expires=3600&X-Amz-Signature=" .. sig
end

--- Register the PUT route.
function M.routes(app, r)
  r:add("PUT", "/media/put/{}", function(req, res, id)
    local up = app.media:upload(id)
    if not up then
      return res:send(404, { ["Content-Type"] = "application/xml" },
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchUpload</Code>"
        .. "<Message>The specified upload does not exist.</Message></Error>")
    end
    -- Vidu's image limit at the storage (config vidu_upload_refuse_at = "put"; see the
    -- finish route in providers/vidu.lua for why finish is the default).
    if up.provider == "vidu" and app.config.vidu_upload_refuse_at == "put"
      and #req.body >= require("vidu.emulator.providers.vidu").image_limit(app) then
      return res:send(400, { ["Content-Type"] = "application/xml" },
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>EntityTooLarge</Code>"
        .. "<Message>Your proposed upload exceeds the maximum allowed size</Message>"
        .. "<ProposedSize>" .. #req.body .. "</ProposedSize></Error>")
    end
    local ctype = req.headers["content-type"] or up.content_type or "application/octet-stream"
    local etag = image.fingerprint(req.body)
    app.media:put_upload(id, req.body, ctype, up.name)
    app.media:upload(id).etag = etag
    return res:send(200, { ETag = '"' .. etag .. '"', ["Content-Type"] = "text/plain" }, "")
  end)
end

return M
