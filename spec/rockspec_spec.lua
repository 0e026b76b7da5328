-- The rockspec lists every module by hand (luarocks' builtin build wants that); this keeps the
-- list true to the tree, so `luarocks make` never installs a layer with a module missing.
local function load_rockspec(path)
  local env = {}
  local chunk
  if setfenv then
    chunk = assert(loadfile(path))
    setfenv(chunk, env)
  else
    chunk = assert(loadfile(path, "t", env))
  end
  chunk()
  return env
end

local function lines(cmd)
  local out = {}
  local p = assert(io.popen(cmd))
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

describe("vidu-scm-1.rockspec", function()
  local spec = load_rockspec("vidu-scm-1.rockspec")

  it("is rockspec 3.0 for package vidu", function()
    assert.are.equal("3.0", spec.rockspec_format)
    assert.are.equal("vidu", spec.package)
  end)

  it("lists every Lua module of lua/ and nothing else", function()
    local expected = {}
    for _, file in ipairs(lines("find lua -name '*.lua' | sort")) do
      local name = file:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      expected[name] = file
    end
    local listed = {}
    for name, src in pairs(spec.build.modules) do
      if type(src) == "string" then listed[name] = src end
    end
    assert.are.same(expected, listed)
  end)

  it("builds vidu.core from every C file of csrc/", function()
    local sources = {}
    for _, s in ipairs(spec.build.modules["vidu.core"].sources) do sources[#sources + 1] = s end
    table.sort(sources)
    assert.are.same(lines("ls csrc/*.c | sort"), sources)
  end)
end)

-- The rock installed as the README says, into a scratch HOME (`--local` installs under
-- $HOME/.luarocks), then used from another directory in a bare environment where only
-- `luarocks path` is set: the emulator's --help and one generation against it.
describe("the rock, installed with luarocks", function()
  local util = require("support.util")
  local q = util.shell_quote
  local LUA = os.getenv("VIDU_LUA") or "lua5.4"
  -- luarocks knows Lua versions, not interpreters: LuaJIT's rock is the 5.1 one.
  local VERSION = ({ luajit = "5.1", ["lua5.1"] = "5.1", ["lua5.3"] = "5.3" })[LUA] or "5.4"
  -- The README's commands for Debian, offline with apt's lua-cjson and lua-luv (for 5.4).
  local MAKE = "luarocks --lua-version 5.4 make --local --deps-mode=none " ..
    "CURL_INCDIR=/usr/include/$(gcc -print-multiarch)"
  local PATHS = 'eval "$(luarocks --lua-version 5.4 path)"'
  local function for_version(cmd) return (cmd:gsub("%-%-lua%-version 5%.4", "--lua-version " .. VERSION)) end

  local function capture(cmd)
    local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
    local out = p:read("*a")
    p:close()
    return out:gsub("exit=%d+\n?$", ""), tonumber(out:match("exit=(%d+)\n?$"))
  end

  local home, root
  local function bare(dir, script)
    return "env -i PATH=" .. q(os.getenv("PATH")) .. " HOME=" .. q(home) ..
      " sh -c " .. q("cd " .. q(dir) .. " && " .. script)
  end

  setup(function()
    root = capture("pwd"):match("^(.-)\n")
    home = os.tmpname()
    os.remove(home)
    -- A copy of the sources, so the build's objects never land in the checkout.
    assert(os.execute("mkdir -p " .. q(home .. "/src") .. " " .. q(home .. "/elsewhere") ..
      " && cp -R csrc lua bin examples vidu-scm-1.rockspec " .. q(home .. "/src")))
  end)

  teardown(function()
    if home then os.execute("rm -rf " .. q(home)) end
  end)

  it("the README gives the install commands this spec runs", function()
    local readme = util.read_file("README.md")
    assert.truthy(readme:find(MAKE, 1, true), "README lacks: " .. MAKE)
    assert.truthy(readme:find(PATHS, 1, true), "README lacks: " .. PATHS)
  end)

  it("installs offline, then vidu-emulator --help and a generation run from another directory", function()
    local out, code = capture(bare(home .. "/src", for_version(MAKE)))
    assert.are.equal(0, code, out)
    assert.matches("vidu scm%-1 is now installed in " .. home:gsub("%p", "%%%0") .. "/%.luarocks", out)

    out, code = capture(bare(home .. "/elsewhere", for_version(PATHS) ..
      " && command -v vidu-emulator && vidu-emulator --help"))
    assert.are.equal(0, code, out)
    assert.matches("^" .. home:gsub("%p", "%%%0") .. "/%.luarocks/bin/vidu%-emulator\n" ..
      "usage: vidu%-emulator", out)

    util.write_file(home .. "/elsewhere/generate.lua", [[
local vidu = require("vidu")
local function find(name, path) -- (Lua 5.1 has no package.searchpath)
  name = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local file = template:gsub("%?", name)
    local f = io.open(file, "rb")
    if f then f:close() return file end
  end
end
print(find("vidu", package.path))
print(find("vidu.core", package.cpath))
local emu = require("vidu.launch").start{ config = { polls = 1, ffmpeg = false } }
local ok, err = pcall(vidu.run, function()
  local client = vidu.client("vidu", { api_key = "any", base_url = emu.url, poll = { first = 0.2 } })
  local task = assert(client:submit{ image = arg[1], prompt = "The astronaut waved." })
  assert(task:wait{ timeout = 60 })
  assert(task:download("out.mp4"))
  print(task.status)
end)
emu:stop()
assert(ok, err)
]])
    out, code = capture(bare(home .. "/elsewhere", for_version(PATHS) .. " && lua" .. VERSION ..
      " generate.lua " .. q(root .. "/spec/fixtures/astronaut.png")))
    assert.are.equal(0, code, out)
    local lr = home .. "/.luarocks"
    assert.are.equal(lr .. "/share/lua/" .. VERSION .. "/vidu/init.lua\n" ..
      lr .. "/lib/lua/" .. VERSION .. "/vidu/core.so\nsucceeded\n", out)
    assert.are.equal("ftyp", util.read_file(home .. "/elsewhere/out.mp4"):sub(5, 8))
  end)
end)
