-- LuaJIT: vidu's own modules run with the JIT off (see lua/vidu/init.lua). Debian 12's LuaJIT
-- miscompiled a `pairs` loop of vidu.http in most rounds of the pattern below (LuaJIT issue
-- #827); the spec runs it in a fresh process of the Lua under test, where it failed 59 of 60
-- rounds before the fix. On the other Luas it is an ordinary concurrency check.
local LUA = os.getenv("VIDU_LUA") or "lua5.4"

describe("vidu under the Lua being tested", function()
  it("queued requests keep their options, round after round, in a fresh process", function()
    local p = assert(io.popen(LUA .. " spec/support/jit_rounds.lua 60 2>&1"))
    local out = p:read("*a")
    p:close()
    local rounds, bad = out:match("rounds (%d+), bad (%d+)")
    assert.is_not_nil(rounds, out)
    assert.are.equal("60", rounds)
    assert.are.equal("0", bad, out)
  end)

  it("every module with functions switches the JIT off for itself on LuaJIT", function()
    local missing = {}
    local p = assert(io.popen("find lua -name '*.lua' | sort"))
    for path in p:lines() do
      local f = assert(io.open(path))
      local src = f:read("*a")
      f:close()
      if src:find("function", 1, true)
        and not src:find("\nif jit then jit.off(true, true) end", 1, true) then
        missing[#missing + 1] = path
      end
    end
    p:close()
    assert.are.same({}, missing)
  end)

  if jit then
    it("and LuaJIT's JIT stays on for the host's own code", function()
      assert.is_true((jit.status()))
    end)
  end
end)
