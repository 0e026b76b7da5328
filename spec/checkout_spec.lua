-- Running from a checkout, as the README says: `eval "$(make -s env)"` then any script from any
-- directory, `make run ARGS=...`, and bin/ scripts that find the checkout by themselves. Each
-- command runs in a fresh shell with a bare environment (env -i: no LUA_PATH, LUA_CPATH or
-- VIDU_LUA from this test run) and from a scratch directory outside the checkout.
local cjson = require("cjson")
local core = require("vidu.core")
local util = require("support.util")
local launch = require("vidu.launch")

local q = util.shell_quote
local LUA = os.getenv("VIDU_LUA") or "lua5.4"

local function capture(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("exit=(%d+)\n?$"))
  return out:gsub("exit=%d+\n?$", ""), code
end

local ROOT = capture("pwd"):match("^(.-)\n")

-- A shell with nothing in its environment but PATH and HOME, in directory `dir`.
local function bare(dir, script)
  return "env -i PATH=" .. q(os.getenv("PATH")) .. " HOME=" .. q(dir) ..
    " sh -c " .. q("cd " .. q(dir) .. " && " .. script)
end

local function scratch()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. q(dir)))
  return dir
end

local function remove(dir) os.execute("rm -rf " .. q(dir)) end

local ENV = 'eval "$(make -s -C ' .. q(ROOT) .. " env LUA=" .. LUA .. ')"'
-- A script printing the files `vidu` and `vidu.core` load from, then its arguments (Lua 5.1
-- has no package.searchpath).
local WHERE = [[
local function find(name, path)
  name = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local file = template:gsub("%?", name)
    local f = io.open(file, "rb")
    if f then f:close() return file end
  end
end
print(find("vidu", package.path))
print(find("vidu.core", package.cpath))
if select("#", ...) > 0 then print(...) end
]]

describe("running from a checkout", function()
  local dir
  before_each(function() dir = scratch() end)
  after_each(function() remove(dir) end)

  it("eval \"$(make -s env)\" puts the checkout's lua/, core and bin/ first, from anywhere", function()
    util.write_file(dir .. "/where.lua", WHERE)
    local out, code = capture(bare(dir, ENV .. " && " .. LUA .. " where.lua" ..
      " && command -v vidu-emulator && echo \"VIDU_LUA=$VIDU_LUA\""))
    assert.are.equal(0, code, out)
    assert.are.equal(table.concat({
      ROOT .. "/lua/vidu/init.lua",
      ROOT .. "/build/" .. LUA .. "/vidu/core.so",
      ROOT .. "/bin/vidu-emulator",
      "VIDU_LUA=" .. LUA, "",
    }, "\n"), out)
  end)

  it("keeps what LUA_PATH and LUA_CPATH already held, after the checkout", function()
    local out, code = capture(bare(dir, "LUA_PATH='/elsewhere/?.lua' LUA_CPATH='/elsewhere/?.so' && " ..
      "export LUA_PATH LUA_CPATH && " .. ENV .. " && " .. LUA ..
      [[ -e "print(package.path); print(package.cpath)"]]))
    assert.are.equal(0, code, out)
    assert.are.equal(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;/elsewhere/?.lua\n" ..
      ROOT .. "/build/" .. LUA .. "/?.so;/elsewhere/?.so\n", out)
  end)

  it("the README gives the commands these specs run", function()
    local readme = util.read_file("README.md")
    for _, cmd in ipairs({ 'eval "$(make -s env)"', "lua5.4 examples/demo.lua vidu my.jpg out/mine.mp4",
      "make run ARGS='script.lua args'" }) do
      assert.truthy(readme:find(cmd, 1, true), "README lacks: " .. cmd)
    end
  end)

  it("runs the demo on your own image from another directory after the env eval", function()
    util.write_file(dir .. "/my.jpg", util.read_file("spec/fixtures/jpeg_640x360.jpg"))
    local out, code = capture(bare(dir, ENV .. " && " .. LUA .. " " .. q(ROOT .. "/examples/demo.lua") ..
      " vidu my.jpg out/mine.mp4"))
    assert.are.equal(0, code, out)
    assert.matches("using the offline emulator at http://127%.0%.0%.1:%d+", out)
    assert.matches("saved out/mine%.mp4", out)
    local mp4 = util.read_file(dir .. "/out/mine.mp4")
    assert.are.equal("ftyp", mp4:sub(5, 8))
  end)

  it("make run ARGS='script args' runs a script with the checkout's paths", function()
    local script = dir .. "/where.lua"
    util.write_file(script, WHERE)
    local out, code = capture(bare(dir, "make -s -C " .. q(ROOT) .. " run LUA=" .. LUA ..
      " ARGS=" .. q(q(script) .. " one two")))
    assert.are.equal(0, code, out)
    assert.are.equal(ROOT .. "/lua/vidu/init.lua\n" .. ROOT .. "/build/" .. LUA ..
      "/vidu/core.so\none\ttwo\n", out)
  end)
end)

describe("bin/ scripts run from a checkout", function()
  local dir
  before_each(function() dir = scratch() end)
  after_each(function() remove(dir) end)

  it("vidu-emulator --help works from another directory with no Lua paths set", function()
    local out, code = capture(bare(dir, LUA .. " " .. q(ROOT .. "/bin/vidu-emulator") .. " --help"))
    assert.are.equal(0, code, out)
    assert.matches("^usage: vidu%-emulator %[%-%-port N%]", out)
    assert.matches("%-%-no%-ffmpeg", out)
  end)

  it("vidu-emulator serves from another directory with no Lua paths set", function()
    local emu = launch.start_server(bare(dir, "exec " .. LUA .. " " .. q(ROOT .. "/bin/vidu-emulator") ..
      " --port 0 --exit-with-parent"), "the emulator")
    local engine = core.engine{}
    local ok, item = pcall(util.fetch, engine, { url = emu.url .. "/_emulator/health", timeout = 10 }, 15)
    engine:close()
    emu:stop()
    assert.is_true(ok, tostring(item))
    assert.are.equal(200, item.status)
    assert.is_true(cjson.decode(item.body).ok)
  end)

  it("each opens with the same checkout-paths block", function()
    local blocks = {}
    local listing = capture("ls bin")
    for name in listing:gmatch("[^\n]+") do
      local text = util.read_file("bin/" .. name)
      local block = text:match("\n(%-%- >>> checkout paths\n.-\n%-%- <<< checkout paths)\n")
      assert.is_string(block, "bin/" .. name .. " has no checkout-paths block")
      blocks[#blocks + 1] = { name = name, block = block }
    end
    assert.is_true(#blocks >= 1)
    for i = 2, #blocks do
      assert.are.equal(blocks[1].block, blocks[i].block,
        "bin/" .. blocks[i].name .. " differs from bin/" .. blocks[1].name)
    end
  end)

  -- The block itself, in a script of a made-up checkout and of a made-up installed tree.
  it("the block puts a checkout's lua/ and build/<lua>/ first; an installed tree keeps its paths", function()
    local block = util.read_file("bin/vidu-emulator")
      :match("\n(%-%- >>> checkout paths\n.-\n%-%- <<< checkout paths)\n")
    local probe = block .. "\nprint(package.path)\nprint(package.cpath)\n"
    assert(os.execute("mkdir -p " .. q(dir .. "/co/bin") .. " " .. q(dir .. "/co/lua/vidu") .. " " ..
      q(dir .. "/installed/bin")))
    util.write_file(dir .. "/co/lua/vidu/init.lua", "return {}\n")
    util.write_file(dir .. "/co/bin/probe", probe)
    util.write_file(dir .. "/installed/bin/probe", probe)
    local defaults = capture(bare(dir, LUA .. [[ -e "print(package.path) print(package.cpath)"]]))
    local out, code = capture(bare(dir, LUA .. " co/bin/probe"))
    assert.are.equal(0, code, out)
    local build = "co/bin/../build/" .. LUA
    assert.are.equal("co/bin/../lua/?.lua;co/bin/../lua/?/init.lua;" .. defaults:gsub("\n", "\n" ..
      build .. "/?.so;", 1), out)
    out, code = capture(bare(dir, LUA .. " installed/bin/probe"))
    assert.are.equal(0, code, out)
    assert.are.equal(defaults, out)
  end)
end)
