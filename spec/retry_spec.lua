local retry = require("vidu.retry")

describe("vidu.retry", function()
  describe("parse_http_date", function()
    local cases = {
      { "Sun, 06 Nov 1994 08:49:37 GMT", 784111777 },
      { "Sunday, 06-Nov-94 08:49:37 GMT", 784111777 },
      { "Sun Nov  6 08:49:37 1994", 784111777 },
      { "Thu, 01 Jan 1970 00:00:00 GMT", 0 },
      { "Tue, 29 Feb 2000 23:59:59 GMT", 951868799 },
      { "Wed, 01 Mar 2100 00:00:00 GMT", 4107542400 },
      { "not a date", nil },
      { "Sun, 06 Foo 1994 08:49:37 GMT", nil },
      { "Sun, 06 Nov 1994 25:49:37 GMT", nil },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        assert.are.equal(case[2], retry.parse_http_date(case[1]))
      end)
    end
  end)

  describe("parse_retry_after", function()
    local now = 784111777
    local cases = {
      { "2", 2 }, { " 10 ", 10 }, { "0", 0 }, { "1.5", 1.5 },
      { "Sun, 06 Nov 1994 08:49:47 GMT", 10 },
      { "Sun, 06 Nov 1994 08:49:30 GMT", 0 },  -- in the past: at once
      { "-1", nil }, { "soon", nil }, { "", nil },
    }
    for _, case in ipairs(cases) do
      it(string.format("%q", case[1]), function()
        assert.are.equal(case[2], retry.parse_retry_after(case[1], now))
      end)
    end
    it("is nil for nil", function() assert.is_nil(retry.parse_retry_after(nil)) end)
  end)

  describe("delay_for", function()
    local function fixed(x) return function() return x end end

    it("doubles from base up to the cap (no jitter)", function()
      local p = retry.policy{ base = 0.5, cap = 4, attempts = 10, jitter = "none" }
      local got = {}
      for a = 1, 6 do got[a] = retry.delay_for(a, nil, p) end
      assert.are.same({ 0.5, 1, 2, 4, 4, 4 }, got)
    end)

    it("full jitter spans 0..step, equal jitter step/2..step", function()
      local full = retry.policy{ base = 1, cap = 8, attempts = 10, jitter = "full" }
      local equal = retry.policy{ base = 1, cap = 8, attempts = 10, jitter = "equal" }
      for _, r in ipairs({ 0, 0.25, 0.999 }) do
        full.random, equal.random = fixed(r), fixed(r)
        assert.are.equal(4 * r, retry.delay_for(3, nil, full))
        assert.are.equal(2 + 2 * r, retry.delay_for(3, nil, equal))
      end
    end)

    it("stays within bounds with the real random source", function()
      local p = retry.policy{ base = 0.5, cap = 30, attempts = 20 }
      for a = 1, 19 do
        local step = math.min(30, 0.5 * 2 ^ (a - 1))
        for _ = 1, 20 do
          local d = retry.delay_for(a, nil, p)
          assert.is_true(d >= step / 2 and d <= step, "attempt " .. a .. " gave " .. d)
        end
      end
    end)

    it("returns nil once the attempts are used up", function()
      local p = retry.policy{ attempts = 3 }
      assert.is_number(retry.delay_for(2, nil, p))
      assert.is_nil(retry.delay_for(3, nil, p))
    end)

    it("waits at least Retry-After, and at most max_retry_after", function()
      local p = retry.policy{ base = 0.1, attempts = 5, max_retry_after = 60, jitter = "none" }
      assert.are.equal(7, retry.delay_for(1, { retry_after = 7 }, p))
      assert.are.equal(0.4, retry.delay_for(3, { retry_after = 0 }, p))
      assert.are.equal(60, retry.delay_for(1, { retry_after = 61 }, p))
      assert.is_nil(retry.delay_for(5, { retry_after = 1 }, p)) -- out of attempts
    end)

    it("rejects unknown options and jitter modes", function()
      assert.has_error(function() retry.policy{ atempts = 3 } end)
      assert.has_error(function() retry.policy{ jitter = "some" } end)
    end)
  end)

  describe("should_retry", function()
    -- { finished item, idempotent, expected retry, expected reason }
    local cases = {
      { { ok = true, status = 503 }, true, true },
      { { ok = true, status = 500 }, true, true },
      { { ok = true, status = 408 }, true, true },
      { { ok = true, status = 429 }, true, true },
      { { ok = true, status = 404 }, true, false },
      { { ok = true, status = 401 }, true, false },
      { { ok = true, status = 503 }, false, true },
      { { ok = true, status = 429 }, false, true },
      { { ok = true, status = 500 }, false, false },
      { { ok = true, status = 502 }, false, false },
      { { ok = false, error = "connect", sent = false }, false, true },
      { { ok = false, error = "resolve", sent = false }, false, true },
      { { ok = false, error = "timeout", sent = false }, false, true },
      { { ok = false, error = "timeout", sent = true }, false, false, "uncertain" },
      { { ok = false, error = "reset", sent = true }, false, false, "uncertain" },
      { { ok = false, error = "reset", sent = true }, true, true },
      { { ok = false, error = "timeout", sent = true }, true, true },
      { { ok = false, error = "tls", sent = false }, true, false },
      { { ok = false, error = "too_large", sent = true }, true, false },
      { { ok = false, error = "file", sent = false }, true, false },
      { { ok = false, error = "canceled", sent = true }, true, false },
    }
    for _, c in ipairs(cases) do
      local item = c[1]
      local name = string.format("%s %s, %s -> %s%s", item.ok and "status" or item.error,
        tostring(item.status or item.sent), c[2] and "idempotent" or "submit", tostring(c[3]),
        c[4] and (" " .. c[4]) or "")
      it(name, function()
        local again, why = retry.should_retry(item, c[2])
        assert.are.equal(c[3], again)
        assert.are.equal(c[4], why)
      end)
    end
  end)
end)
