local errors = require("vidu.errors")

describe("vidu.errors", function()
  describe("tostring", function()
    local cases = {
      { { kind = "rate_limited", provider = "fal", status = 429, code = "X", message = "slow down" },
        "vidu: fal: rate_limited (HTTP 429, code X): slow down" },
      { { kind = "network", message = "connection refused" },
        "vidu: network: connection refused" },
      { { kind = "invalid", provider = "vidu", field = "seed", limit = "0..2147483647",
          message = "seed must be in 0..2147483647" },
        "vidu: vidu: invalid (field seed): seed must be in 0..2147483647" },
      { { kind = "failed", provider = "vtrix", task_id = "t1", code = 8008003001, message = "boom" },
        "vidu: vtrix: failed (code 8008003001, task t1): boom" },
      { { kind = "timeout" }, "vidu: timeout: " .. errors.kinds.timeout },
      { { kind = "http", status = 500, code = "" , message = "x" }, "vidu: http (HTTP 500): x" },
    }
    for i, case in ipairs(cases) do
      it("formats case " .. i .. ": " .. case[2], function()
        assert.are.equal(case[2], tostring(errors.new(case[1])))
      end)
    end
  end)

  it("defaults retryable to false and keeps every field", function()
    local e = errors.new{ kind = "uncertain", may_exist = true, task_id = "abc", retry_after = 3 }
    assert.is_false(e.retryable)
    assert.is_true(e.may_exist)
    assert.are.equal("abc", e.task_id)
    assert.are.equal(3, e.retry_after)
    assert.is_true(errors.is(e))
    assert.is_false(errors.is({ kind = "http" }))
  end)

  it("raises on an unknown kind or field (a programmer's mistake)", function()
    assert.has_error(function() errors.new{ kind = "oops" } end)
    assert.has_error(function() errors.new{ kind = "http", colour = "red" } end)
    assert.has_error(function() errors.new("http") end)
  end)

  it("redacts a secret from every string field, pattern characters included", function()
    local key = "k3y%-(secret).+*"
    local e = errors.new{
      kind = "auth", status = 401, code = "bad " .. key,
      message = "invalid key " .. key .. " and again " .. key,
    }
    errors.redact(e, key)
    local s = tostring(e)
    assert.is_nil(s:find(key, 1, true))
    assert.are.equal("invalid key *** and again ***", e.message)
    assert.are.equal("bad ***", e.code)
  end)

  it("maps statuses to kinds", function()
    assert.are.equal("auth", errors.kind_for_status(401))
    assert.are.equal("auth", errors.kind_for_status(403))
    assert.are.equal("rate_limited", errors.kind_for_status(429))
    assert.are.equal("http", errors.kind_for_status(500))
    assert.are.equal("http", errors.kind_for_status(404))
  end)
end)
