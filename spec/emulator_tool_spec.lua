-- The emulator as a test tool: --no-ffmpeg really runs no ffmpeg, an ffmpeg run has a time
-- limit and dies with the emulator (SIGTERM included), and /_emulator/log stays valid JSON
-- whatever bytes the requests carried. ffmpeg's place is taken by a stand-in script (config
-- `ffmpeg = path`) that records its pid and hangs, the hostile case these rules are for.
local core = require("vidu.core")
local cjson = require("cjson")
local ejson = require("vidu.emulator.json")
local emulator = require("support.emulator")
local util = require("support.util")

local PNG = util.read_file("spec/fixtures/png_640x360.png")
local FALLBACK = util.read_file("lua/vidu/emulator/assets/fallback.mp4")
local VIDU = "Token vidu-key"

-- Is the process running? (a zombie counts as gone)
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("*l") or ""
  f:close()
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- A stand-in for ffmpeg: appends its pid to pidfile, then sleeps (exec: the pid stays its own).
local function hanging_ffmpeg()
  local script, pidfile = os.tmpname(), os.tmpname()
  os.remove(pidfile)
  util.write_file(script, "#!/bin/sh\necho $$ >> " .. util.shell_quote(pidfile) .. "\nexec sleep 600\n")
  os.execute("chmod +x " .. util.shell_quote(script))
  return script, pidfile
end

-- Submits an image-to-video task to the emulator's Vidu routes -> the task's video URL.
local function submit(emu)
  local item = emu:request{ method = "POST", path = "/ent/v2/img2video",
    headers = { Authorization = VIDU, ["Content-Type"] = "application/json" },
    body = ejson.encode{ model = "viduq1", prompt = "The astronaut waved.",
      images = { "data:image/png;base64," .. core.b64encode(PNG) } } }
  assert.are.equal(200, item.status, item.body)
  local id = cjson.decode(item.body).task_id
  return emu:task(id).task.video_url
end

local function health(emu)
  return emu:control("GET", "/_emulator/health")
end

describe("the emulator as a test tool", function()
  local emu, tmp, pidfiles

  before_each(function() tmp, pidfiles = {}, {} end)

  after_each(function()
    if emu then emu:stop() end
    emu = nil
    -- A failed test must not leave a stand-in behind: TERM, then KILL what is left.
    for _, f in ipairs(pidfiles) do
      for pid in (util.read_file_if_exists(f) or ""):gmatch("%d+") do
        if alive(pid) then
          os.execute("kill -TERM " .. pid .. " 2>/dev/null")
          local deadline = core.now() + 3
          while alive(pid) and core.now() < deadline do util.luv().sleep(20) end
          if alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
        end
      end
    end
    for _, f in ipairs(tmp) do os.remove(f) end
  end)

  it("--no-ffmpeg serves the bundled video and never runs ffmpeg", function()
    emu = emulator.start{ args = { "--no-ffmpeg" } }
    assert.is_false(health(emu).ffmpeg)
    local video = emu:request{ url = submit(emu) }
    assert.are.equal(200, video.status)
    assert.is_true(video.body == FALLBACK, "not the bundled video")
    assert.are.equal(0, health(emu).ffmpeg_runs)
  end)

  it("kills an ffmpeg run past its time limit and serves the bundled video", function()
    local script, pidfile = hanging_ffmpeg()
    tmp, pidfiles = { pidfile, script }, { pidfile }
    emu = emulator.start{ config = { ffmpeg = script, ffmpeg_timeout = 1 } }
    local url = submit(emu)
    local pid = emu:wait_for(function()
      return tonumber((util.read_file_if_exists(pidfile) or ""):match("%d+"))
    end, 30)
    assert.is_number(pid, "the stand-in never started")
    -- The video is answered once its job is done: here, once the run was killed.
    local video = emu:request{ url = url, timeout = 60 }
    assert.are.equal(200, video.status)
    assert.is_true(video.body == FALLBACK, "not the bundled video")
    assert.is_truthy(emu:wait_for(function() return not alive(pid) end, 10), "ffmpeg still runs")
    assert.are.equal(1, health(emu).ffmpeg_runs)
  end)

  it("kills its ffmpeg runs when it is stopped with SIGTERM", function()
    local script, pidfile = hanging_ffmpeg()
    tmp, pidfiles = { pidfile, script }, { pidfile }
    emu = emulator.start{ config = { ffmpeg = script, ffmpeg_timeout = 600 } }
    submit(emu)
    local pid = emu:wait_for(function()
      return tonumber((util.read_file_if_exists(pidfile) or ""):match("%d+"))
    end, 30)
    assert.is_number(pid, "the stand-in never started")
    assert.is_true(alive(pid))
    os.execute("kill -TERM " .. emu.pid)
    assert.is_truthy(emu:wait_for(function() return not alive(emu.pid) end, 10),
      "the emulator did not exit on SIGTERM")
    assert.is_truthy(emu:wait_for(function() return not alive(pid) end, 10),
      "ffmpeg outlived the emulator")
  end)

  it("keeps /_emulator/log valid JSON for binary bodies and header bytes", function()
    emu = emulator.start{}
    local binary = PNG:sub(1, 300) .. "\255\254\0end"
    local text = '{"prompt":"caf\195\169 \226\156\147"}'
    emu:request{ method = "POST", path = "/ent/v2/img2video", body = binary,
      headers = { Authorization = VIDU, ["X-Raw"] = "a\255b" } }
    emu:request{ method = "POST", path = "/ent/v2/img2video", body = text,
      headers = { Authorization = VIDU, ["Content-Type"] = "application/json" } }
    local item = emu:request{ path = "/_emulator/log" }
    assert.are.equal(200, item.status)
    assert.is_number(core.utf8_len(item.body), "the log is not UTF-8, so not JSON")
    local requests = cjson.decode(item.body).requests
    assert.are.equal(2, #requests)
    assert.is_nil(requests[1].body)
    assert.are.equal(binary, core.b64decode(requests[1].body_base64))
    assert.are.equal("a\\xFFb", requests[1].headers["x-raw"])
    assert.are.equal(text, requests[2].body)
    assert.is_nil(requests[2].body_base64)
  end)

  describe("its plain-Lua UTF-8 check (used without vidu.core)", function()
    local eutil = require("vidu.emulator.util")
    local cases = {
      { "ASCII", "plain text" }, { "two-byte", "caf\195\169" }, { "three-byte", "\226\156\147" },
      { "four-byte", "\240\157\132\158" }, { "U+10FFFF", "\244\143\191\191" },
      { "overlong 2-byte", "\192\128" }, { "overlong 3-byte", "\224\128\128" },
      { "overlong 4-byte", "\240\128\128\128" }, { "surrogate", "\237\160\128" },
      { "above U+10FFFF", "\244\144\128\128" }, { "lead F5", "\245\128\128\128" },
      { "stray continuation", "a\128" }, { "truncated", "ok \226\156" },
      { "bad continuation", "\226\40\161" }, { "binary", PNG:sub(1, 64) },
    }
    for _, case in ipairs(cases) do
      it(case[1] .. " as vidu.core judges it", function()
        assert.are.equal(core.utf8_len(case[2]) ~= nil, eutil.utf8_valid_lua(case[2]))
      end)
    end
  end)
end)
