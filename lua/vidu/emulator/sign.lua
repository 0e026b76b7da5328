--- Webhook signatures as the providers make them, through the openssl CLI (OpenSSL 3), run
-- asynchronously so the server never blocks:
--   Vidu       base64(HMAC-SHA256(api token, signing string))
--   WaveSpeed  hex(HMAC-SHA256(secret without "whsec_", "{id}.{timestamp}.{body}"))
--   fal        hex(Ed25519(request_id \n user_id \n timestamp \n hex(sha256(body))))
-- Checked against the providers' own pages (providers.md A.8, B.4, C.4: docs.fal.ai
-- model-endpoints/webhooks, platform.vidu.com/docs/callback-signature,
-- wavespeed.ai/docs/verify-webhooks): the three agree with what the providers document, so
-- nothing here was changed for vidu.webhooks, which verifies them. Note that Vidu's documented
-- signing string covers the request line, Date and the signed headers, not the body.
-- The signers run here, on the openssl command-line tool, and not on vidu.core, so the
-- library's verifier is tested against an independent implementation.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local uv = require("luv")
local proc = require("vidu.emulator.proc")
local image = require("vidu.emulator.image")

local M = {}

local function tohex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
M.tohex = tohex

--- Is signing possible here?
function M.available()
  return proc.which("openssl") ~= nil
end

local function run_openssl(args, input, cb)
  local ok, err = proc.run(proc.which("openssl") or "openssl", args, { input = input },
    function(code, out, errout)
      if code ~= 0 then return cb(nil, "openssl failed: " .. errout) end
      cb(out)
    end)
  if not ok then cb(nil, err) end
end

--- HMAC-SHA256 -> cb(raw_bytes | nil, err).
function M.hmac_sha256(key, data, cb)
  run_openssl({ "dgst", "-sha256", "-binary", "-mac", "HMAC", "-macopt", "hexkey:" .. tohex(key) },
    data, cb)
end

--- SHA-256 -> cb(hex | nil, err).
function M.sha256_hex(data, cb)
  run_openssl({ "dgst", "-sha256", "-binary" }, data, function(raw, err)
    if not raw then return cb(nil, err) end
    cb(tohex(raw))
  end)
end

--- Ed25519 key pair for fal webhooks, made once at start-up (synchronous: it runs before the
-- server listens). Returns { pem = path, x = base64url public key, kid = ... } | nil, err.
function M.ed25519_keygen(dir)
  local openssl = proc.which("openssl")
  if not openssl then return nil, "openssl not found" end
  local pem = dir .. "/fal-webhook-key.pem"
  local rc = os.execute(string.format("%s genpkey -algorithm ed25519 -out '%s' 2>/dev/null", openssl, pem))
  if rc ~= true and rc ~= 0 then return nil, "openssl genpkey failed" end
  local p = io.popen(string.format("%s pkey -in '%s' -pubout -outform DER 2>/dev/null", openssl, pem), "r")
  local der = p and p:read("*a") or ""
  if p then p:close() end
  if #der < 32 then return nil, "openssl pkey failed" end
  local raw = der:sub(-32)
  return { pem = pem, x = image.b64url(raw), raw = raw, kid = tohex(raw):sub(1, 16) }
end

local tmp_n = 0
--- Ed25519 signature -> cb(hex | nil, err). The message goes through a file: openssl's
-- one-shot (-rawin) signing cannot read stdin.
function M.ed25519_sign(key, dir, msg, cb)
  tmp_n = tmp_n + 1
  local path = string.format("%s/sign-%d-%d.msg", dir, uv.os_getpid(), tmp_n)
  local f = io.open(path, "wb")
  if not f then return cb(nil, "cannot write " .. path) end
  f:write(msg)
  f:close()
  run_openssl({ "pkeyutl", "-sign", "-inkey", key.pem, "-rawin", "-in", path }, nil, function(sig, err)
    os.remove(path)
    if not sig then return cb(nil, err) end
    cb(tohex(sig))
  end)
end

return M
