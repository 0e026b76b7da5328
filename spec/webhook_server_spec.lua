-- examples/webhook_server.lua as a child process, receiving the emulator's real callbacks of
-- all three signed schemes: each verified and answered 200; with the emulator's knobs, a bad
-- signature and a stale timestamp rejected (401, and retried by the emulator), a duplicate
-- recognised. What it prints is read back only once the emulator saw the answers, so a
-- broken example fails the spec instead of hanging it.
local emulator = require("support.emulator")
local core = require("vidu.core")
local cjson = require("cjson")
local ejson = require("vidu.emulator.json")
local http = require("vidu.emulator.http")
local util = require("support.util")

local PNG = util.read_file("spec/fixtures/png_640x360.png")
local DATA_URI = "data:image/png;base64," .. core.b64encode(PNG)
local VIDU_TOKEN = "vidu-token-for-the-example"
local WS_KEY = "Bearer ws-key-for-the-example"

local emu, server, ws_secret

local function call(method, path, auth, body)
  local item = emu:request{ method = method, path = path, headers = { Authorization = auth,
    ["Content-Type"] = "application/json" }, body = body and ejson.encode(body) or nil }
  item.json = item.body and item.body ~= "" and cjson.decode(item.body) or nil
  return item
end

local function submit(provider)
  emu:next{ seconds = 0.1 }
  local r
  if provider == "fal" then
    r = call("POST", "/fal-ai/vidu/q1/image-to-video?fal_webhook="
      .. http.escape(server.url .. "/webhooks/fal"), "Key k", { prompt = "x", image_url = DATA_URI })
    assert.are.equal(200, r.status, r.body)
    return r.json.request_id
  elseif provider == "vidu" then
    r = call("POST", "/ent/v2/img2video", "Token " .. VIDU_TOKEN, { model = "viduq1", images = { DATA_URI },
      prompt = "x", callback_url = server.url .. "/webhooks/vidu?from=spec" })
    assert.are.equal(200, r.status, r.body)
    return r.json.task_id
  end
  r = call("POST", "/api/v3/vidu/image-to-video-2.0?webhook="
    .. http.escape(server.url .. "/webhooks/wavespeed"), WS_KEY, { image = DATA_URI, prompt = "x" })
  assert.are.equal(200, r.status, r.body)
  return r.json.data.id
end

-- Waits until the emulator has `n` deliveries, all over -> the deliveries.
local function deliveries(n)
  local list = emu:wait_for(function()
    local l = emu:webhooks()
    if #l < n then return nil end
    for _, d in ipairs(l) do
      if not d.done then return nil end
    end
    return l
  end, 60)
  assert.is_table(list, "the deliveries did not finish")
  return list
end

-- The lines the example printed for these deliveries (one per attempt, each printed before
-- its answer went out, so they are all there to read).
local function lines_for(list)
  local n = 0
  for _, d in ipairs(list) do n = n + #d.attempts end
  local out = {}
  for i = 1, n do out[i] = server.pipe:read("*l") end
  return out
end

local function find_line(lines, pattern)
  for _, l in ipairs(lines) do
    if l:find(pattern) then return l end
  end
end

setup(function()
  emu = emulator.start{ seed = 21 }
  ws_secret = call("GET", "/api/v3/webhook/secret", WS_KEY).json.data.secret
  local lua = os.getenv("VIDU_LUA") or "lua5.4"
  server = util.start_server(table.concat({ "env",
    "VIDU_API_KEY=" .. util.shell_quote(VIDU_TOKEN),
    "WAVESPEED_WEBHOOK_SECRET=" .. util.shell_quote(ws_secret),
    "FAL_JWKS_URL=" .. util.shell_quote(emu.url .. "/.well-known/jwks.json"),
    lua, "examples/webhook_server.lua", "0" }, " "), "examples/webhook_server.lua")
end)

teardown(function()
  if server then server:stop() end
  if emu then emu:stop() end
end)

before_each(function()
  emu:reset{ webhook_retry_delay = 0.05, fal_webhook_attempts = 2 }
end)

describe("examples/webhook_server.lua", function()
  it("verifies fal, Vidu and WaveSpeed callbacks and answers 200", function()
    local fal_id, vidu_id, ws_id = submit("fal"), submit("vidu"), submit("wavespeed")
    local list = deliveries(4)
    for _, d in ipairs(list) do
      assert.is_true(d.ok, d.provider .. " " .. tostring(d.event))
      assert.are.equal(1, #d.attempts)
    end
    local lines = lines_for(list)
    assert.are.equal(4, #lines)
    table.sort(lines)
    local want = { "verified fal " .. fal_id .. " OK", "verified vidu " .. vidu_id .. " processing",
      "verified vidu " .. vidu_id .. " success", "verified wavespeed " .. ws_id .. " completed" }
    table.sort(want)
    assert.are.same(want, lines)
  end)

  it("rejects the emulator's bad signatures with 401, and the emulator retries", function()
    emu:config{ webhook_bad_signature = true }
    submit("fal")
    submit("wavespeed")
    local list = deliveries(2)
    for _, d in ipairs(list) do
      assert.is_false(d.ok)
      assert.is_true(#d.attempts >= 2)
      for _, a in ipairs(d.attempts) do assert.are.equal(401, a.status) end
    end
    local lines = lines_for(list)
    for _, l in ipairs(lines) do
      assert.matches("^rejected %a+: .*code bad_signature", l)
      assert.is_nil(l:find(ws_secret, 1, true))
      assert.is_nil(l:find(ws_secret:sub(7), 1, true))
    end
    assert.is_string(find_line(lines, "^rejected fal: "))
    assert.is_string(find_line(lines, "^rejected wavespeed: "))
  end)

  it("rejects a stale timestamp", function()
    emu:config{ webhook_stale = 1000 }
    submit("vidu")
    local list = deliveries(2)
    local lines = lines_for(list)
    assert.is_true(#lines >= 2)
    for _, l in ipairs(lines) do
      assert.matches("^rejected vidu: .*code stale_timestamp, field Date", l)
      assert.is_nil(l:find(VIDU_TOKEN, 1, true))
    end
  end)

  it("recognises a duplicate delivery", function()
    emu:config{ webhook_duplicate = true }
    local id = submit("wavespeed")
    local list = deliveries(2)
    local lines = lines_for(list)
    assert.are.same({ "verified wavespeed " .. id .. " completed",
      "duplicate wavespeed " .. id .. " completed" }, lines)
  end)

  it("with --generate, finishes each task from its verified callback and downloads it", function()
    emu:reset{ progress = "time", seconds = 0.5, outcome = "success" }
    local out = os.tmpname()
    os.remove(out)
    local lua = os.getenv("VIDU_LUA") or "lua5.4"
    local p = assert(io.popen("VIDU_API_KEY=" .. VIDU_TOKEN .. " timeout 90 " .. lua ..
      " examples/webhook_server.lua 0 --generate vidu 3 spec/fixtures/png_640x360.png " ..
      util.shell_quote(out) .. " --base-url " .. emu.url .. " 2>&1"))
    local log = p:read("*a")
    p:close()
    local downloaded, verified = 0, 0
    for line in log:gmatch("[^\n]+") do
      if line:match("^downloaded ") then downloaded = downloaded + 1 end
      if line:match("^verified vidu %S+ success$") then verified = verified + 1 end
    end
    assert.are.equal(3, downloaded, log)
    assert.are.equal(3, verified, log)
    for i = 1, 3 do
      assert.are.equal("ftyp", util.read_file(string.format("%s/%03d.mp4", out, i)):sub(5, 8))
    end
    -- The callbacks finished the tasks: nobody polled (a task's creations or the task list).
    assert.are.equal(0, #emu:requests{ method = "GET", match = "^/ent/v2/tasks" })
    assert.is_nil(log:find(VIDU_TOKEN, 1, true))
    os.execute("rm -rf " .. util.shell_quote(out))
  end)
end)
