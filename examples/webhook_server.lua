--- A webhook receiver: verifies each provider's callbacks with vidu.webhooks and prints what
-- arrived; with --generate it also submits generations whose callbacks come back here, and
-- finishes each task from its verified callback (client:deliver) and downloads its video.
--
--   VIDU_API_KEY=... WAVESPEED_WEBHOOK_SECRET=whsec_... lua examples/webhook_server.lua [port]
--   VIDU_API_KEY=... lua examples/webhook_server.lua 0 --generate vidu 3 in.png outdir
--     [--base-url URL]     (the emulator, for instance; the callbacks must reach this host)
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
-- --generate PROVIDER N IMAGE OUTDIR [--base-url URL]
local gen
if arg[2] == "--generate" then
  gen = { provider = arg[3], n = tonumber(arg[4]), image = arg[5], out = arg[6],
    base_url = arg[7] == "--base-url" and arg[8] or nil }
  assert(gen.provider == "vidu" and gen.n and gen.image and gen.out,
    "usage: webhook_server.lua PORT --generate vidu N IMAGE OUTDIR [--base-url URL]")
end
local client -- with --generate: the client whose live tasks the callbacks finish
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
  -- The task waiting in this process finishes now (late and duplicate callbacks change
  -- nothing: a task's status never goes back). Vidu's signature does not cover the body, so a
  -- careful receiver confirms with a poll before acting on it; the wait below does not need to.
  if client and provider == client.provider then client:deliver(req.body or "") end
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

if gen then
  local vidu = require("vidu")
  require("vidu.hosts.luv").attach(uv)
  -- Polling only as a slow fallback: the callbacks finish the tasks.
  client = vidu.client(gen.provider, { base_url = gen.base_url, poll = { first = 600, max = 600 } })
  os.execute("mkdir -p '" .. gen.out:gsub("'", "'\\''") .. "'")
  local left = gen.n
  for i = 1, gen.n do
    vidu.spawn(function()
      local task = assert(client:submit{ image = gen.image, seed = i,
        callback_url = server.url .. "/webhooks/vidu" })
      print("submitted " .. task.id)
      assert(task:wait{ timeout = 600 })
      local path = string.format("%s/%03d.mp4", gen.out, i)
      assert(task:download(path))
      print("downloaded " .. task.id .. " " .. path)
      left = left - 1
      if left == 0 then
        server:close()
        uv.stop()
      end
    end)
  end
end

uv.run()
