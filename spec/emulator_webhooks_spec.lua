-- The emulator's callbacks and webhooks, received by a luv server in this process, their
-- signatures checked with independent code: the openssl command-line tool (HMAC-SHA256 for
-- Vidu and WaveSpeed, Ed25519 against the served JWKS for fal).
local emulator = require("support.emulator")
local uv = emulator.luv()
local core = require("vidu.core")
local cjson = require("cjson")
local http = require("vidu.emulator.http")
local util = require("support.util")
local read, write_tmp, shell_quote = util.read_file, util.write_tmp, util.shell_quote

-- Run a command, return its stdout and whether it exited 0.
local function run(cmd)
  local p = io.popen(cmd .. "; echo \"::$?\"", "r")
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.*)::(%d+)%s*$")
  return body, tonumber(code) == 0
end

local function openssl_hmac_sha256(key, data)
  local path = write_tmp(data)
  local raw = run("openssl dgst -sha256 -hmac " .. shell_quote(key) .. " -binary " .. path)
  os.remove(path)
  return raw
end

local function openssl_sha256_hex(data)
  local path = write_tmp(data)
  local out = run("openssl dgst -sha256 -r " .. path)
  os.remove(path)
  return out:match("^(%x+)")
end

local function tohex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function fromhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function b64url_decode(s)
  s = s:gsub("-", "+"):gsub("_", "/")
  while #s % 4 ~= 0 do s = s .. "=" end
  return core.b64decode(s)
end

-- Verify an Ed25519 signature with openssl against a raw 32-byte public key.
local function openssl_ed25519_verify(raw_pub, msg, sig)
  local der = fromhex("302a300506032b6570032100") .. raw_pub
  local pem = "-----BEGIN PUBLIC KEY-----\n" .. core.b64encode(der) .. "\n-----END PUBLIC KEY-----\n"
  local kp, mp, sp = write_tmp(pem), write_tmp(msg), write_tmp(sig)
  local _, ok = run("openssl pkeyutl -verify -pubin -inkey " .. kp .. " -rawin -in " .. mp
    .. " -sigfile " .. sp
    .. " >/dev/null 2>&1")
  os.remove(kp); os.remove(mp); os.remove(sp)
  return ok
end

local PNG = read("spec/fixtures/png_640x360.png")
local DATA_URI = "data:image/png;base64," .. core.b64encode(PNG)

local emu, receiver
local received = {}
local answers = {} -- statuses to answer with, in order; 200 when empty

-- Let the luv loop (our receiver) run until fn() returns a value or the deadline passes.
local function pump_until(fn, seconds)
  local deadline = core.now() + (seconds or 30)
  while core.now() < deadline do
    uv.run("nowait")
    local v = fn()
    if v then return v end
    uv.sleep(5)
  end
  return nil
end

-- A provider call as JSON with an Authorization header (support.emulator's Emu:call).
local function call(method, path, auth, body)
  return emu:call(method, path, { auth = auth, json = body })
end

local function find(pred)
  for _, r in ipairs(received) do
    if pred(r) then return r end
  end
end

setup(function()
  emu = emulator.start{ seed = 11 }
  receiver = assert(http.server{ port = 0, handler = function(req, res)
    received[#received + 1] = req
    local status = table.remove(answers, 1) or 200
    res:send(status, { ["Content-Type"] = "text/plain" }, "ok")
  end })
end)

teardown(function()
  if receiver then receiver:close() end
  uv.run("nowait")
  if emu then emu:stop() end
end)

before_each(function()
  received, answers = {}, {}
  emu:reset{ webhook_retry_delay = 0.05 }
end)

describe("emulator webhooks", function()
  it("Vidu: POSTs processing and success to callback_url, signed with HMAC-SHA256 X-HMAC-*", function()
    local key = "vidu-token-123"
    emu:next{ seconds = 0.3 }
    local cb = receiver.url .. "/vidu/callback?name=james&age=36"
    local r = call("POST", "/ent/v2/img2video", "Token " .. key, { model = "viduq1", images = { DATA_URI },
      prompt = "x", callback_url = cb })
    assert.are.equal(200, r.status, r.body)
    local id = r.json.task_id
    local done = pump_until(function()
      return find(function(q) return cjson.decode(q.body).state == "success" end)
    end)
    assert.is_table(done, "no success callback")
    assert.is_table(find(function(q) return cjson.decode(q.body).state == "processing" end))
    for _, q in ipairs(received) do
      local body = cjson.decode(q.body)
      assert.are.equal(id, body.id)
      assert.are.equal("/vidu/callback", q.path)
      local h = q.headers
      assert.are.equal("hmac-sha256", h["x-hmac-algorithm"])
      assert.are.equal("vidu", h["x-hmac-access-key"])
      assert.are.equal("Date;x-request-nonce", h["x-hmac-signed-headers"])
      local signing = "POST\n/vidu/callback\nname=james&age=36\nvidu\n" .. h["date"] .. "\n"
        .. "Date:" .. h["date"] .. "\n" .. "x-request-nonce:" .. h["x-request-nonce"] .. "\n"
      local expected = core.b64encode(openssl_hmac_sha256(key, signing))
      assert.are.equal(expected, h["x-hmac-signature"])
      assert.are_not.equal(core.b64encode(openssl_hmac_sha256("other-key", signing)), h["x-hmac-signature"])
    end
    local body = cjson.decode(done.body)
    assert.are.equal(1, #body.creations)
    assert.is_string(body.creations[1].url)
  end)

  it("WaveSpeed: signs \"{id}.{timestamp}.{body}\" with the key's secret (v3,<hex>)", function()
    local auth = "Bearer ws-key"
    emu:next{ seconds = 0.2 }
    local r = call("POST", "/api/v3/vidu/image-to-video-2.0?webhook=" .. http.escape(receiver.url
      .. "/ws"), auth,
      { image = DATA_URI, prompt = "x" })
    assert.are.equal(200, r.status, r.body)
    local id = r.json.data.id
    local q = pump_until(function() return received[1] end)
    assert.is_table(q, "no webhook")
    local secret = call("GET", "/api/v3/webhook/secret", auth).json.data.secret
    local h = q.headers
    assert.are.equal(id, h["webhook-id"])
    local expected = "v3," .. tohex(openssl_hmac_sha256(secret:gsub("^whsec_", ""),
      h["webhook-id"] .. "." .. h["webhook-timestamp"] .. "." .. q.body))
    assert.are.equal(expected, h["webhook-signature"])
    local payload = cjson.decode(q.body)
    assert.are.equal(id, payload.id)
    assert.are.equal("completed", payload.status)
    assert.are.equal(1, #payload.outputs)
  end)

  it("fal: signs with Ed25519, verifiable with the key from /.well-known/jwks.json", function()
    emu:next{ seconds = 0.2 }
    local r = call("POST", "/fal-ai/vidu/q1/image-to-video?fal_webhook=" .. http.escape(receiver.url
      .. "/fal"),
      "Key kid:ksecret", { prompt = "x", image_url = DATA_URI })
    assert.are.equal(200, r.status, r.body)
    local id = r.json.request_id
    local q = pump_until(function() return received[1] end)
    assert.is_table(q, "no webhook")
    local h = q.headers
    assert.are.equal(id, h["x-fal-webhook-request-id"])
    local payload = cjson.decode(q.body)
    assert.are.equal("OK", payload.status)
    assert.are.equal(id, payload.request_id)
    assert.is_string(payload.payload.video.url)
    local jwks = call("GET", "/.well-known/jwks.json").json
    local pub = b64url_decode(jwks.keys[1].x)
    assert.are.equal(32, #pub)
    local msg = id .. "\n" .. h["x-fal-webhook-user-id"] .. "\n" .. h["x-fal-webhook-timestamp"] .. "\n"
      .. openssl_sha256_hex(q.body)
    local sig = fromhex(h["x-fal-webhook-signature"])
    assert.are.equal(64, #sig)
    assert.is_true(openssl_ed25519_verify(pub, msg, sig))
    assert.is_false(openssl_ed25519_verify(pub, msg .. "x", sig))
  end)

  it("fal: a failed task sends status ERROR", function()
    emu:next{ seconds = 0.1, outcome = "failed" }
    call("POST", "/fal-ai/vidu/q1/image-to-video?fal_webhook=" .. http.escape(receiver.url .. "/fal"),
      "Key k", { prompt = "x", image_url = DATA_URI })
    local q = pump_until(function() return received[1] end)
    assert.is_table(q)
    local payload = cjson.decode(q.body)
    assert.are.equal("ERROR", payload.status)
    assert.is_string(payload.error)
  end)

  it("retries a failed delivery until it is accepted", function()
    answers = { 500, 503 }
    emu:next{ seconds = 0.1 }
    local r = call("POST", "/model/v1/generation", "Bearer vt", { model = "viduq1_img2video",
      input = { { params = { images = { DATA_URI }, prompt = "x", callback_url = receiver.url
        .. "/vt" } } } })
    assert.are.equal(200, r.status, r.body)
    local q = pump_until(function() return received[3] end)
    assert.is_table(q, "no third attempt")
    local payload = cjson.decode(q.body)
    assert.are.equal("completed", payload.status)
    assert.are.equal(r.json.id, payload.id)
    local d = pump_until(function()
      local list = emu:webhooks()
      return list[1] and list[1].done and list[1]
    end)
    assert.is_true(d.ok)
    assert.are.equal(3, #d.attempts)
    assert.are.equal(500, d.attempts[1].status)
    assert.are.equal(200, d.attempts[3].status)
  end)

  it("gives up after the provider's number of attempts", function()
    answers = { 500, 500, 500, 500, 500, 500 }
    emu:next{ seconds = 0.1 }
    call("POST", "/api/v3/vidu/image-to-video-2.0?webhook=" .. http.escape(receiver.url .. "/ws"), "Bearer k",
      { image = DATA_URI, prompt = "x" })
    local d = pump_until(function()
      local list = emu:webhooks()
      return list[1] and list[1].done and list[1]
    end)
    assert.is_table(d)
    assert.is_false(d.ok)
    assert.are.equal(4, #d.attempts)
  end)

  it("records an unreachable callback as failed attempts", function()
    emu:next{ seconds = 0.1 }
    call("POST", "/ent/v2/img2video", "Token k", { model = "viduq1", images = { DATA_URI },
      callback_url = "http://127.0.0.1:1/nowhere" })
    local d = pump_until(function()
      for _, x in ipairs(emu:webhooks()) do
        if x.event == "success" and x.done then return x end
      end
    end)
    assert.is_table(d)
    assert.is_false(d.ok)
    assert.is_string(d.attempts[1].error)
  end)
end)
