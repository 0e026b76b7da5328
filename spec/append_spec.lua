-- core.append_sync: the durable append under vidu.journal.
local core = require("vidu.core")
local util = require("support.util")

describe("core.append_sync", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. util.shell_quote(dir)))
  end)
  after_each(function()
    os.execute("rm -rf " .. util.shell_quote(dir))
  end)

  it("creates the file, then appends each call's bytes whole and in order", function()
    local path = dir .. "/j.jsonl"
    assert.is_true(core.append_sync(path, '{"a":1}\n'))
    assert.is_true(core.append_sync(path, '{"b":2}\n'))
    assert.is_true(core.append_sync(path, "bin\0ary\n"))
    assert.are.equal('{"a":1}\n{"b":2}\nbin\0ary\n', util.read_file(path))
  end)

  it("writes a line larger than a pipe buffer in one piece", function()
    local path = dir .. "/big"
    local line = string.rep("x", 300000) .. "\n"
    assert.is_true(core.append_sync(path, "a\n"))
    assert.is_true(core.append_sync(path, line))
    assert.are.equal("a\n" .. line, util.read_file(path))
  end)

  it("returns nil and a message naming the path when the file cannot be opened", function()
    local ok, err = core.append_sync(dir .. "/no/such/dir/j", "x\n")
    assert.is_nil(ok)
    assert.are.equal("append_sync: " .. dir .. "/no/such/dir/j: No such file or directory", err)
    ok, err = core.append_sync(dir, "x\n")
    assert.is_nil(ok)
    assert.matches("Is a directory", err)
  end)

  it("raises on wrong argument types", function()
    assert.has_error(function() core.append_sync(nil, "x") end)
    assert.has_error(function() core.append_sync(dir .. "/j", {}) end)
  end)
end)
