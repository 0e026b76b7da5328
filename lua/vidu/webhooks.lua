--- Webhook and callback verification: is this request really from the provider, unchanged?
--
--   local webhooks = require("vidu.webhooks")
--   local ok, err = webhooks.verify("wavespeed", {
--     method = "POST", path = "/hooks/ws?x=1", headers = headers, body = raw_body,
--   }, { secret = "whsec_..." })
--   if not ok then reply(401, tostring(err)) end   -- err.code: "stale_timestamp", ...
--
-- The three signed schemes, as the providers document them (checked against the emulator's
-- signers in lua/vidu/emulator/, which agree; sources below):
--   fal        Ed25519 over request_id \n user_id \n timestamp \n hex(sha256(body)), the
--              headers X-Fal-Webhook-{Request-Id,User-Id,Timestamp,Signature} (signature in
--              hex), the public keys from fal's JWKS ({kty:"OKP", crv:"Ed25519", x}); keys
--              rotate, so every key is tried and the set is cached for at most 24 h; the
--              timestamp within +-300 s. (docs.fal.ai model-endpoints/webhooks "Verifying
--              your webhook", and independent verifiers quoting it: providers.md A.8)
--   vidu       base64(HMAC-SHA256(api token, METHOD \n path \n query \n access_key \n Date \n
--              signed headers)), each header named in X-HMAC-SIGNED-HEADERS as "Name:value\n"
--              in that order; X-HMAC-ALGORITHM hmac-sha256, X-HMAC-ACCESS-KEY vidu.
--              (platform.vidu.com/docs/callback-signature: providers.md B.4) Vidu states no
--              tolerance; its Date header is signed, so it is held to the same tolerance.
--   wavespeed  webhook-signature "v3,<hex HMAC-SHA256(secret without whsec_, not base64
--              decoded, "{webhook-id}.{webhook-timestamp}.{raw body}")>", timestamps older
--              than 300 s refused. (wavespeed.ai/docs/verify-webhooks: providers.md C.4)
-- Vtrix and relays document no callback signature, so there is nothing to verify.
--
-- A failure comes back as nil, err with err.kind "webhook" and err.code one of
-- missing_header, bad_header, stale_timestamp, bad_signature, unknown_key, jwks_unavailable;
-- err.field names the header when one is at fault. Secrets never appear in an error.
-- Signatures are compared in constant time (vidu.core's crypto, on OpenSSL).
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local core = require("vidu.core")
local errors = require("vidu.errors")
local json = require("vidu.json")

local webhooks = {}

--- fal's published key set (older docs name https://rest.alpha.fal.ai/.well-known/jwks.json).
webhooks.FAL_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"

--- Seconds a timestamp may be away from now (fal and WaveSpeed document 5 minutes).
webhooks.TOLERANCE = 300

-- fal: cache a key set for at most this long (fal's docs: at most 24 h), less if its
-- Cache-Control max-age says so.
local JWKS_MAX_AGE = 86400
-- When no cached key verifies a signature, the set is fetched again (fal may have rotated
-- its keys), but not more often than this: a stream of forged requests must not become a
-- stream of requests to fal.
local JWKS_REFRESH = 60
local JWKS_MAX_BYTES = 1048576

local OPTIONS = { secret = true, jwks_url = true, tolerance = true, now = true, jwks_refresh = true }

-- url -> { keys = { raw 32-byte keys }, fetched = core.now(), expires = core.now() + ttl }
local cache = {}

--- Forgets every cached JWKS (the next fal verification fetches its key set again).
function webhooks.clear_cache()
  cache = {}
end

local function fail(provider, code, message, field)
  return nil, errors.new{ kind = "webhook", provider = provider, code = code, message = message,
    field = field }
end

-- Header names lower-cased; a value repeated (a list of more than one) is kept as false so
-- it can be refused: two signatures or two timestamps are never guessed between.
local function header_map(headers)
  local h = {}
  for name, value in pairs(headers) do
    if type(name) ~= "string" then
      error("vidu.webhooks.verify: req.headers must map names to values", 3)
    end
    local tv = type(value)
    if tv == "table" then
      if #value == 1 then value = value[1] else value = false end
    elseif tv == "number" then
      value = tostring(value)
    elseif tv ~= "string" then
      error("vidu.webhooks.verify: header " .. name .. " must be a string, got " .. tv, 3)
    end
    local key = name:lower()
    if h[key] ~= nil then value = false end
    h[key] = value
  end
  return h
end

-- The value of a required header -> value | nil, err.
local function need(provider, h, name)
  local v = h[name:lower()]
  if v == nil or v == "" then
    return fail(provider, "missing_header", "missing header " .. name, name)
  end
  if v == false then
    return fail(provider, "bad_header", "header " .. name .. " appears more than once", name)
  end
  return v
end

-- A Unix-seconds header checked against now -> true | nil, err.
local function check_time(provider, name, t, o)
  local age = o.now - t
  if age > o.tolerance or -age > o.tolerance then
    return fail(provider, "stale_timestamp", string.format(
      "%s is %d s %s now (tolerance %g s)", name, math.floor(math.abs(age)),
      age > 0 and "before" or "after", o.tolerance), name)
  end
  return true
end

local function unix_header(provider, name, v, o)
  if not v:match("^%d+$") or #v > 12 then
    return fail(provider, "bad_header", name .. " is not a Unix time in seconds", name)
  end
  return check_time(provider, name, tonumber(v), o)
end

-- An HTTP date ("Tue, 06 May 2025 12:09:42 GMT") -> Unix seconds | nil: the retry policy's
-- parser (which Retry-After uses too).
local http_date = require("vidu.retry").parse_http_date

---------------------------------------------------------------------------------------------
-- fal: Ed25519 with the keys of a JWKS.

-- Fetch and parse a JWKS -> entry | nil, err. Through the scheduler's transfer: it yields
-- inside a vidu coroutine and blocks (driving the rest) outside one.
local function fetch_jwks(url)
  local item = require("vidu.scheduler").default():transfer{ method = "GET", url = url,
    headers = { Accept = "application/json" }, connect_timeout = 10, timeout = 30,
    max_response = JWKS_MAX_BYTES, follow = true }
  local function unavailable(why)
    return fail("fal", "jwks_unavailable", "fetching the JWKS at " .. url .. ": " .. why)
  end
  if not item.ok then return unavailable(tostring(item.message or item.error)) end
  if item.status ~= 200 then return unavailable("HTTP " .. tostring(item.status)) end
  local doc, jerr = json.decode(item.body or "")
  if type(doc) ~= "table" or type(doc.keys) ~= "table" then
    return unavailable(jerr and ("bad JSON: " .. jerr) or "no \"keys\" list")
  end
  local keys = {}
  for _, k in ipairs(doc.keys) do
    if type(k) == "table" and k.kty == "OKP" and k.crv == "Ed25519" and type(k.x) == "string"
      and (k.use == nil or k.use == "sig") then
      local raw = core.b64urldecode(k.x)
      if raw and #raw == 32 then keys[#keys + 1] = raw end
    end
  end
  local ttl = JWKS_MAX_AGE
  local cc = item.headers and item.headers["cache-control"]
  if type(cc) == "string" then
    local lc = cc:lower()
    local age = tonumber(lc:match("max%-age%s*=%s*(%d+)"))
    if age and age < ttl then ttl = age end
    if lc:find("no-store", 1, true) or lc:find("no-cache", 1, true) then ttl = 0 end
  end
  local now = core.now()
  return { keys = keys, fetched = now, expires = now + ttl }
end

local function any_key_verifies(keys, msg, sig)
  for _, key in ipairs(keys) do
    if core.ed25519_verify(key, msg, sig) then return true end
  end
  return false
end

local function verify_fal(_, h, o)
  local rid, err = need("fal", h, "X-Fal-Webhook-Request-Id")
  if not rid then return nil, err end
  local uid
  uid, err = need("fal", h, "X-Fal-Webhook-User-Id")
  if not uid then return nil, err end
  local ts
  ts, err = need("fal", h, "X-Fal-Webhook-Timestamp")
  if not ts then return nil, err end
  local sighex
  sighex, err = need("fal", h, "X-Fal-Webhook-Signature")
  if not sighex then return nil, err end
  local ok
  ok, err = unix_header("fal", "X-Fal-Webhook-Timestamp", ts, o)
  if not ok then return nil, err end
  local sig = core.hexdecode(sighex)
  if not sig or #sig ~= 64 then
    return fail("fal", "bad_signature", "X-Fal-Webhook-Signature is not 64 bytes of hex",
      "X-Fal-Webhook-Signature")
  end
  local msg = rid .. "\n" .. uid .. "\n" .. ts .. "\n" .. core.hexencode(core.sha256(o.body))

  local url = o.jwks_url
  local entry = cache[url]
  local fetched_now = false
  if not entry or core.now() >= entry.expires then
    local fresh, ferr = fetch_jwks(url)
    if fresh then
      entry, fetched_now = fresh, true
      cache[url] = fresh
    elseif not entry then
      return nil, ferr
    end -- else: keep using the expired set while the fetch fails
  end
  if any_key_verifies(entry.keys, msg, sig) then return true end
  if not fetched_now and core.now() - entry.fetched >= o.jwks_refresh then
    -- Maybe fal rotated its keys since: fetch the set once more.
    local fresh = fetch_jwks(url)
    if fresh then
      entry = fresh
      cache[url] = fresh
      if any_key_verifies(entry.keys, msg, sig) then return true end
    end
  end
  if #entry.keys == 0 then
    return fail("fal", "unknown_key", "the JWKS at " .. url .. " has no Ed25519 key")
  end
  return fail("fal", "bad_signature", string.format(
    "no key of the JWKS at %s (%d key%s) verifies X-Fal-Webhook-Signature", url, #entry.keys,
    #entry.keys == 1 and "" or "s"), "X-Fal-Webhook-Signature")
end

---------------------------------------------------------------------------------------------
-- Vidu: HMAC-SHA256 with the X-HMAC-* headers, keyed with the API token.

local function verify_vidu(req, h, o)
  local sig, err = need("vidu", h, "X-HMAC-SIGNATURE")
  if not sig then return nil, err end
  local list
  list, err = need("vidu", h, "X-HMAC-SIGNED-HEADERS")
  if not list then return nil, err end
  local date
  date, err = need("vidu", h, "Date")
  if not date then return nil, err end
  local alg = h["x-hmac-algorithm"]
  if alg ~= nil and (alg == false or alg:lower() ~= "hmac-sha256") then
    return fail("vidu", "bad_header", "X-HMAC-ALGORITHM is not hmac-sha256", "X-HMAC-ALGORITHM")
  end
  local access = h["x-hmac-access-key"]
  if access == nil then access = "vidu" end
  if access ~= "vidu" then
    -- Vidu documents one access key, "vidu"; a secret for any other is not known here.
    return fail("vidu", "unknown_key", "X-HMAC-ACCESS-KEY is not \"vidu\"", "X-HMAC-ACCESS-KEY")
  end
  local t = http_date(date)
  if not t then return fail("vidu", "bad_header", "Date is not an HTTP date", "Date") end
  local ok
  ok, err = check_time("vidu", "Date", t, o)
  if not ok then return nil, err end
  local signed = {}
  for name in (list .. ";"):gmatch("%s*([^;]-)%s*;") do
    if name ~= "" then
      local v
      v, err = need("vidu", h, name)
      if not v then return nil, err end
      signed[#signed + 1] = name .. ":" .. v .. "\n"
    end
  end
  if #signed == 0 then
    return fail("vidu", "bad_header", "X-HMAC-SIGNED-HEADERS names no header", "X-HMAC-SIGNED-HEADERS")
  end
  -- The path and the query as received (the docs: a standard URL parser's path and query of
  -- callback_url; an empty path is "/").
  local path, query = req.path:match("^([^?]*)%??(.*)$")
  if path == "" then path = "/" end
  local signing = (req.method or "POST"):upper() .. "\n" .. path .. "\n" .. query .. "\n" .. access
    .. "\n" .. date .. "\n" .. table.concat(signed)
  local expected = core.b64encode(core.hmac_sha256(o.secret, signing))
  if not core.secure_equal(expected, sig) then
    return fail("vidu", "bad_signature", "X-HMAC-SIGNATURE does not match", "X-HMAC-SIGNATURE")
  end
  return true
end

---------------------------------------------------------------------------------------------
-- WaveSpeed: "v3,<hex HMAC-SHA256>" over "{id}.{timestamp}.{body}".

local function verify_wavespeed(_, h, o)
  local id, err = need("wavespeed", h, "webhook-id")
  if not id then return nil, err end
  local ts
  ts, err = need("wavespeed", h, "webhook-timestamp")
  if not ts then return nil, err end
  local header
  header, err = need("wavespeed", h, "webhook-signature")
  if not header then return nil, err end
  local ok
  ok, err = unix_header("wavespeed", "webhook-timestamp", ts, o)
  if not ok then return nil, err end
  -- The docs' key: the secret without its whsec_ prefix, used as text (not base64-decoded).
  local key = o.secret:gsub("^whsec_", "")
  local mac = core.hmac_sha256(key, id .. "." .. ts .. "." .. o.body)
  local seen = false
  -- One "v3,<hex>" as documented; a space-separated list (as during a secret rotation in
  -- schemes of this family) is accepted when any v3 entry matches.
  for entry in header:gmatch("%S+") do
    local hex = entry:match("^v3,(%x+)$")
    if hex then
      seen = true
      local raw = core.hexdecode(hex)
      if raw and core.secure_equal(raw, mac) then return true end
    end
  end
  if not seen then
    return fail("wavespeed", "bad_signature", "webhook-signature holds no \"v3,<hex>\" signature",
      "webhook-signature")
  end
  return fail("wavespeed", "bad_signature", "webhook-signature does not match", "webhook-signature")
end

local VERIFIERS = { fal = verify_fal, vidu = verify_vidu, wavespeed = verify_wavespeed }

--- Verifies a provider's webhook or callback: true | nil, err (err.kind "webhook", err.code
-- says what failed). req: method, path (as received, query included), headers (any case),
-- body (the raw bytes). opts: secret (vidu: the API token; wavespeed: the webhook secret,
-- with or without "whsec_"), jwks_url (fal), tolerance (s, default 300), now (Unix s),
-- jwks_refresh (s between refetches of a JWKS no key of which verifies, default 60).
function webhooks.verify(provider, req, opts)
  local verifier = VERIFIERS[provider]
  if not verifier then
    error("vidu.webhooks.verify: provider must be \"fal\", \"vidu\" or \"wavespeed\", got "
      .. tostring(provider) .. " (Vtrix and relays document no callback signature)", 2)
  end
  if type(req) ~= "table" then error("vidu.webhooks.verify: req must be a table", 2) end
  if type(req.body) ~= "string" then
    error("vidu.webhooks.verify: req.body must be the raw body (a string)", 2)
  end
  if type(req.headers) ~= "table" then error("vidu.webhooks.verify: req.headers must be a table", 2) end
  if provider == "vidu" and (type(req.path) ~= "string" or req.path:sub(1, 1) ~= "/") then
    error("vidu.webhooks.verify: req.path must be the request path as received (\"/...\")", 2)
  end
  if req.method ~= nil and type(req.method) ~= "string" then
    error("vidu.webhooks.verify: req.method must be a string", 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then error("vidu.webhooks.verify: opts must be a table", 2) end
  for k in pairs(opts) do
    if not OPTIONS[k] then error("vidu.webhooks.verify: unknown option " .. tostring(k), 2) end
  end
  local o = { body = req.body, jwks_url = opts.jwks_url or webhooks.FAL_JWKS_URL,
    tolerance = opts.tolerance or webhooks.TOLERANCE, now = opts.now or os.time(),
    jwks_refresh = opts.jwks_refresh or JWKS_REFRESH, secret = opts.secret }
  if provider ~= "fal" then
    if type(o.secret) ~= "string" or o.secret == "" or o.secret == "whsec_" then
      error("vidu.webhooks.verify: opts.secret must be a non-empty string for " .. provider, 2)
    end
  end
  if type(o.jwks_url) ~= "string" or not o.jwks_url:match("^https?://") then
    error("vidu.webhooks.verify: opts.jwks_url must be an http(s) URL", 2)
  end
  for _, k in ipairs({ "tolerance", "now", "jwks_refresh" }) do
    if type(o[k]) ~= "number" or o[k] < 0 or o[k] ~= o[k] then
      error("vidu.webhooks.verify: opts." .. k .. " must be a number >= 0", 2)
    end
  end
  local h = header_map(req.headers)
  local ok, err = verifier(req, h, o)
  if not ok then return nil, errors.redact(err, o.secret) end
  return true
end

--- Reads a callback body (the raw bytes, or decoded JSON) into the observation a poll gives,
-- and the task id it is about: obs, id | nil, err. Providers: fal (fal_webhook), vidu and
-- relay (callback_url), wavespeed (webhook), vtrix (callback_url). Apply it with
-- client:deliver. Pure: no I/O, no verification (do webhooks.verify first).
function webhooks.read(provider, body)
  local registry = require("vidu.providers")
  if not registry.get(provider) then
    error("vidu.webhooks.read: unknown provider " .. tostring(provider), 2)
  end
  local j = body
  if type(body) == "string" then
    local ok, v = pcall(json.decode, body)
    if not ok or type(v) ~= "table" then
      return nil, errors.new{ kind = "webhook", provider = provider, code = "bad_body",
        message = "the callback body is not a JSON object" }
    end
    j = v
  elseif type(body) ~= "table" then
    error("vidu.webhooks.read: body must be a string or a table", 2)
  end
  local obs, id = registry.driver(provider).read_callback(j)
  if not obs or not id then
    return nil, errors.new{ kind = "webhook", provider = provider, code = "bad_body",
      message = "the callback body is not a " .. provider .. " task answer" }
  end
  return obs, id
end

return webhooks
