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
