-- vidu.pace: when a task polls next, and how one task's finish wakes the others.
local Pace = require("vidu.pace")
local scheduler = require("vidu.scheduler")

-- A pace whose jitter is fixed by `r` (0.5 = no jitter).
local function pace_with(r)
  return Pace.new(scheduler.new(), function() return r end)
end

describe("vidu.pace", function()
  it("jitters each gap by at most 20%", function()
    assert.are.equal(10, pace_with(0.5):jitter(10))
    assert.are.equal(8, pace_with(0):jitter(10))
    assert.is_true(math.abs(pace_with(0.999999):jitter(10) - 12) < 1e-4)
  end)

  -- One row per case: estimate, age, gap, factor, overdue polls -> expected delay.
  local rows = {
    { "no estimate: the schedule's gap", nil, 3, 5, 1.5, 0, 5 },
    { "young task: sleeps to the estimate, not past it", 10, 7, 6, 1.5, 0, 3 },
    { "young task, gap shorter than the estimate", 10, 2, 3, 1.5, 0, 3 },
    { "overdue: a tenth of the estimate", 20, 21, 15, 1.5, 0, 2 },
    { "overdue twice: that, grown by the factor", 20, 25, 15, 1.5, 2, 4.5 },
    { "overdue, short task: never below half a second", 2, 3, 15, 1.5, 0, 0.5 },
    { "overdue, but the schedule's gap is shorter still", 100, 150, 4, 1.5, 0, 4 },
  }
  for _, row in ipairs(rows) do
    it(row[1], function()
      local p = pace_with(0.5)
      p.estimate = row[2]
      assert.is_true(math.abs(p:delay(row[3], row[4], row[5], row[6]) - row[7]) < 1e-9)
    end)
  end

  it("learns only shorter estimates, and only positive ages", function()
    local p = pace_with(0.5)
    p:observe(0)
    assert.is_nil(p.estimate)
    p:observe(12)
    assert.are.equal(12, p.estimate)
    p:observe(15)
    assert.are.equal(12, p.estimate)
    p:observe(9)
    assert.are.equal(9, p.estimate)
  end)

  it("wakes tasks sleeping on it when it learns, and makes a fresh event", function()
    local s = scheduler.new()
    local p = Pace.new(s)
    local first = p.event
    local woke
    s:run(function()
      local sleeper = s:spawn(function() return s:sleep(3600, p.event) end)
      s:spawn(function()
        s:sleep(0.01)
        p:observe(5)
      end)
      local ok, how = sleeper:wait()
      assert.is_true(ok)
      woke = how
    end)
    assert.are.equal("event", woke)
    assert.is_true(first.fired)
    assert.is_false(p.event.fired)
  end)

  it("does not wake sleepers when the estimate does not shrink", function()
    local s = scheduler.new()
    local p = Pace.new(s)
    p:observe(5)
    local ev = p.event
    p:observe(6)
    assert.are.equal(ev, p.event)
    assert.is_false(ev.fired)
  end)

  it("ends a plain sleep on its timer", function()
    local s = scheduler.new()
    local ev = s:event()
    assert.are.equal("timer", s:run(function() return s:sleep(0.01, ev) end))
    assert.are.equal("timer", s:sleep(0.01, ev)) -- blocking, outside any coroutine
  end)
end)
