--- A webhook receiver: verifies each provider's callbacks with vidu.webhooks and prints what
-- arrived. (Finishing the waiting task from the callback comes with vidu.webhooks.read.)
--
--   VIDU_API_KEY=... WAVESPEED_WEBHOOK_SECRET=whsec_... lua examples/webhook_server.lua [port]
--
-- It listens on 127.0.0.1 (WEBHOOK_HOST=0.0.0.0 to take connections from elsewhere, usually
-- behind a TLS-terminating proxy: the providers want an https URL).
-- Give the providers these URLs (port 8080 by default; 0 picks a free one):
--   fal        ?fal_webhook=http://HOST:PORT/webhooks/fal
--   Vidu       callback_url = "http://HOST:PORT/webhooks/vidu"   (signed with VIDU_API_KEY)
--   WaveSpeed  ?webhook=http://HOST:PORT/webhooks/wavespeed      (WAVESPEED_WEBHOOK_SECRET, from
--              GET /api/v3/webhook/secret)
-- FAL_JWKS_URL replaces fal's key set URL (bin/vidu-emulator serves one at /.well-known/jwks.json).
--
-- The first line printed is the server's URL; then one line per callback:
--   verified wavespeed 1f0c... completed
--   duplicate vidu 8123... success          (verified, but seen before: a retry or a replay)
--   rejected fal: vidu: fal: webhook (code bad_signature, ...): ...
-- A verified callback gets 200; anything else 401, and the provider retries it later.
--
-- The HTTP server is the small luv one the rock ships for its emulator (vidu.emulator.http);
-- any server that hands over the raw body, the path with its query and the headers will do.
-- A fal callback whose key set is not cached yet fetches it first, blocking this loop for that
-- one request (the key set is then cached for up to 24 h).
local uv = require("luv")
local http = require("vidu.emulator.http")
local json = require("vidu.json")
local webhooks = require("vidu.webhooks")

local port = tonumber(arg[1] or "8080")
local options = {
  fal = { jwks_url = os.getenv("FAL_JWKS_URL") },
  vidu = { secret = os.getenv("VIDU_API_KEY") },
  wavespeed = { secret = os.getenv("WAVESPEED_WEBHOOK_SECRET") },
}

io.stdout:setvbuf("line")

-- Callbacks already accepted, by provider, id and state: a provider retries a delivery it
-- never saw answered, and an attacker may replay a captured one within the tolerance.
local seen = {}

-- What a callback says: its task id and state, in each provider's body.
local function describe(provider, body)
  local b = json.decode(body)
  if type(b) ~= "table" then return "?", "?" end
  if provider == "fal" then return tostring(b.request_id), tostring(b.status) end
  if provider == "vidu" then return tostring(b.id or b.task_id), tostring(b.state) end
  return tostring(b.id), tostring(b.status)
end

local function handle(req, res)
  local provider = req.path:match("^/webhooks/(%a+)$")
  local opts = provider and options[provider]
  if req.method ~= "POST" or not opts then
    return res:send(404, { ["Content-Type"] = "text/plain" }, "not found\n")
  end
  if provider ~= "fal" and not opts.secret then
    print("rejected " .. provider .. ": no secret configured for it")
    return res:send(401, { ["Content-Type"] = "text/plain" }, "not configured\n")
  end
  local ok, err = webhooks.verify(provider, { method = req.method, path = req.target,
    headers = req.headers, body = req.body or "" }, opts)
  if not ok then
    print("rejected " .. provider .. ": " .. tostring(err))
    return res:send(401, { ["Content-Type"] = "text/plain" }, (err.code or "refused") .. "\n")
  end
  local id, state = describe(provider, req.body or "")
  local key = provider .. " " .. id .. " " .. state
  print((seen[key] and "duplicate " or "verified ") .. key)
  seen[key] = true
  return res:send(200, { ["Content-Type"] = "text/plain" }, "ok\n")
end

local server = assert(http.server{ host = os.getenv("WEBHOOK_HOST") or "127.0.0.1", port = port,
  handler = handle })
print(server.url)

-- SIGINT/SIGTERM: stop listening and leave the loop.
for _, name in ipairs({ "sigint", "sigterm" }) do
  local sig = uv.new_signal()
  sig:start(name, function()
    server:close()
    uv.stop()
  end)
  sig:unref()
end

uv.run()
