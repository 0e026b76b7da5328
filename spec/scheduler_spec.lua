local scheduler = require("vidu.scheduler")
local core = require("vidu.core")

-- Each test gets its own scheduler, so one test's leftovers cannot leak into the next.
local function fresh() return scheduler.new() end

-- Drives a host-style loop with step() until `done()` or a deadline; never sleeps a fixed
-- time to "let things happen": it sleeps only as long as step() asks.
local function drive(s, done, limit)
  local deadline = core.now() + (limit or 5)
  while not done() do
    assert(core.now() < deadline, "deadline passed")
    local wait = s:step()
    if wait and wait > 0 then s:engine():wait(math.ceil(math.min(wait, 0.05) * 1000)) end
  end
end

describe("vidu.scheduler", function()
  it("run returns fn's results, arguments passed through", function()
    local s = fresh()
    local a, b, c, n = s:run(function(x, y) return x + y, "two", nil, select("#", x, y) end, 1, 2)
    assert.are.equal(3, a)
    assert.are.equal("two", b)
    assert.is_nil(c)
    assert.are.equal(2, n)
  end)

  it("run raises fn's error with the coroutine's traceback", function()
    local s = fresh()
    local ok, err = pcall(s.run, s, function()
      s:sleep(0)
      error("boom in fn")
    end)
    assert.is_false(ok)
    assert.matches("boom in fn", err)
    assert.matches("stack traceback", err)
    assert.matches("scheduler_spec", err)
  end)

  it("run raises table errors as they are", function()
    local s = fresh()
    local e = { kind = "x" }
    local ok, err = pcall(s.run, s, function() error(e) end)
    assert.is_false(ok)
    assert.are.equal(e, err)
  end)

  it("sleeps wake in deadline order, equal deadlines in call order", function()
    local s = fresh()
    local order = {}
    s:run(function()
      for _, spec in ipairs({ { "c", 0.06 }, { "a", 0.02 }, { "b", 0.04 }, { "a2", 0.02 } }) do
        s:spawn(function()
          s:sleep(spec[2])
          order[#order + 1] = spec[1]
        end)
      end
    end)
    assert.are.same({ "a", "a2", "b", "c" }, order)
  end)

  it("sleeps on an event that does not fire leave nothing on its list", function()
    local s = fresh()
    local ev = s:event()
    s:run(function()
      for _ = 1, 50 do assert.are.equal("timer", s:sleep(0.001, { ev, s:event() })) end
    end)
    -- One entry per sleep used to stay until the event fired: a task's callback event,
    -- slept on at every poll, grew by one for each.
    assert.are.equal(0, #ev.waiters)
    -- And the event still wakes a sleeper.
    local woke
    s:run(function()
      s:spawn(function() s:sleep(0.001) s:signal(ev) end)
      woke = s:sleep(30, ev)
    end)
    assert.are.equal("event", woke)
  end)

  it("an event slept on by many keeps its list bounded, and wakes only the live sleepers", function()
    -- A pace kind's event: a sleeper per waiting task, each sleep ending by its own timer
    -- (entries are dropped in bulk, not searched for one by one).
    local s = fresh()
    local ev = s:event()
    local N, longest, woke_by_event, short_done = 200, 0, 0, 0
    s:run(function()
      for i = 1, N do
        s:spawn(function()
          -- Half of them sleep short ten times (their entries go stale), half long (live):
          -- kept, the stale entries would reach N / 2 * 10.
          if i % 2 == 0 then
            for _ = 1, 10 do
              assert.are.equal("timer", s:sleep(0.001 * (i % 7), ev))
              local entries = #ev.waiters / 2
              if entries > longest then longest = entries end
              assert.is_true(entries <= 2 * N, entries .. " entries")
            end
            short_done = short_done + 1
          else
            if s:sleep(30, ev) == "event" then woke_by_event = woke_by_event + 1 end
          end
        end)
      end
      -- Fired once every short sleeper is done (their clock may run slow, under valgrind).
      while short_done < N / 2 do s:sleep(0.01) end
      s:signal(ev)
    end)
    assert.are.equal(N / 2, woke_by_event)
    assert.is_true(longest >= N / 2)
  end)

  it("a sleep takes at least its time", function()
    local s = fresh()
    local t0 = core.now()
    s:run(function() s:sleep(0.05) end)
    assert.is_true(core.now() - t0 >= 0.05)
  end)

  it("sleeps run concurrently inside run", function()
    local s = fresh()
    local t0 = core.now()
    s:run(function()
      for _ = 1, 20 do s:spawn(function() s:sleep(0.1) end) end
    end)
    -- Twenty 0.1 s sleeps in a row would be 2 s.
    assert.is_true(core.now() - t0 < 1.0)
  end)

  it("run waits for everything fn spawned, nested spawns included", function()
    local s = fresh()
    local done = {}
    s:run(function()
      s:spawn(function()
        s:sleep(0.01)
        s:spawn(function()
          s:sleep(0.02)
          done[#done + 1] = "grandchild"
        end)
        done[#done + 1] = "child"
      end)
    end)
    assert.are.same({ "child", "grandchild" }, done)
  end)

  it("raises an error of a spawned coroutine nobody collected", function()
    local s = fresh()
    local ok, err = pcall(s.run, s, function()
      s:spawn(function() error("lost child") end)
    end)
    assert.is_false(ok)
    assert.matches("lost child", err)
  end)

  it("job:wait returns results or the error", function()
    local s = fresh()
    s:run(function()
      local good = s:spawn(function(x) s:sleep(0.01) return x * 2 end, 21)
      local bad = s:spawn(function() error("bad job", 0) end)
      assert.are.same({ true, 42 }, { good:wait() })
      local ok, err = bad:wait()
      assert.is_false(ok)
      assert.are.equal("bad job", err)
    end)
  end)

  it("gather waits all concurrently and reports each in order", function()
    local s = fresh()
    local fake_task = {
      wait = function(_, opts) s:sleep(0.02) return nil, "task failed " .. opts.tag end,
    }
    local t0 = core.now()
    local results, nfailed = s:run(function()
      return s:gather({
        function() s:sleep(0.05) return "slow", 2 end,
        function() s:sleep(0.01) return "fast" end,
        function() error("raised", 0) end,
        function() return nil, "soft" end,
        fake_task,
        s:spawn(function() return true end),
      }, { tag = "T" })
    end)
    assert.is_true(core.now() - t0 < 0.5)
    assert.are.equal(3, nfailed)
    assert.are.same({ ok = true, n = 2, "slow", 2 }, results[1])
    assert.are.same({ ok = true, n = 1, "fast" }, results[2])
    assert.are.same({ ok = false, err = "raised", n = 0 }, results[3])
    assert.are.same({ ok = false, err = "soft", n = 2, [2] = "soft" }, results[4])
    assert.are.equal("task failed T", results[5].err)
    assert.is_true(results[6].ok)
  end)

  it("gather works outside run too (blocking)", function()
    local s = fresh()
    local results = s:gather({ function() s:sleep(0.01) return 1 end, function() return 2 end })
    assert.are.equal(1, results[1][1])
    assert.are.equal(2, results[2][1])
  end)

  it("holds 1,000 sleeping coroutines", function()
    local s = fresh()
    local woke = 0
    local t0 = core.now()
    s:run(function()
      for i = 1, 1000 do
        s:spawn(function()
          s:sleep(0.05 + (i % 10) * 0.005)
          woke = woke + 1
        end)
      end
      assert.are.equal(1000, s:stats().live - 1)
    end)
    assert.are.equal(1000, woke)
    assert.is_true(core.now() - t0 < 2)
    assert.are.equal(0, s:stats().live)
  end)

  it("sleep outside run blocks and lets spawned coroutines progress meanwhile", function()
    local s = fresh()
    local ticks = 0
    s:spawn(function()
      for _ = 1, 3 do
        s:sleep(0.01)
        ticks = ticks + 1
      end
    end)
    local t0 = core.now()
    s:sleep(0.1)
    assert.is_true(core.now() - t0 >= 0.1)
    assert.are.equal(3, ticks)
  end)

  it("a wait inside a foreign coroutine blocks instead of yielding to it", function()
    local s = fresh()
    local co = coroutine.create(function()
      s:sleep(0.02)
      return "slept"
    end)
    local ok, v = coroutine.resume(co)
    assert.is_true(ok)
    assert.are.equal("slept", v)
    assert.are.equal("dead", coroutine.status(co))
  end)

  it("a foreign coroutine inside run blocks, others keep running", function()
    local s = fresh()
    local other = 0
    s:run(function()
      s:spawn(function()
        for _ = 1, 5 do s:sleep(0.005) other = other + 1 end
      end)
      local wrapped = coroutine.wrap(function() s:sleep(0.1) return "inner" end)
      assert.are.equal("inner", wrapped())
      assert.are.equal(5, other)
    end)
  end)

  it("step never blocks and says when to call again", function()
    local s = fresh()
    local woke = false
    s:spawn(function() s:sleep(0.2) woke = true end)
    local t0 = core.now()
    local wait = s:step()
    assert.is_true(core.now() - t0 < 0.05)
    assert.is_number(wait)
    assert.is_true(wait > 0.1 and wait <= 0.2)
    drive(s, function() return woke end)
    assert.is_nil(s:step())
  end)

  it("a plain coroutine.yield inside a scheduler coroutine lets others run", function()
    local s = fresh()
    local log = {}
    s:run(function()
      s:spawn(function() for i = 1, 3 do log[#log + 1] = "a" .. i coroutine.yield() end end)
      s:spawn(function() for i = 1, 3 do log[#log + 1] = "b" .. i coroutine.yield() end end)
    end)
    assert.are.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, log)
  end)

  it("refuses to be resumed by someone else", function()
    local s = fresh()
    local ok, err = pcall(s.run, s, function()
      local me = coroutine.running()
      s:spawn(function() coroutine.resume(me, "intruder") end)
      s:sleep(0.05)
    end)
    assert.is_false(ok)
    assert.matches("resumed by someone other than the scheduler", err)
  end)

  it("reports a deadlock instead of hanging", function()
    local s = fresh()
    local ok, err = pcall(s.run, s, function()
      local ev = { fired = false, waiters = {} }
      s:_wait_event(ev, "nothing")
    end)
    assert.is_false(ok)
    assert.matches("deadlock", err)
  end)

  it("run called inside run yields and returns the inner results", function()
    local s = fresh()
    local ticks = 0
    local a, b = s:run(function()
      s:spawn(function() for _ = 1, 3 do s:sleep(0.005) ticks = ticks + 1 end end)
      return s:run(function() s:sleep(0.03) return "inner", 2 end)
    end)
    assert.are.equal("inner", a)
    assert.are.equal(2, b)
    assert.are.equal(3, ticks)
  end)

  it("a semaphore bounds concurrency and serves waiters in order", function()
    local s = fresh()
    local sem = s:semaphore(2)
    local inside, peak, order = 0, 0, {}
    s:run(function()
      for i = 1, 6 do
        s:spawn(function()
          sem:acquire()
          order[#order + 1] = i
          inside = inside + 1
          if inside > peak then peak = inside end
          s:sleep(0.01)
          inside = inside - 1
          sem:release()
        end)
      end
    end)
    assert.are.equal(2, peak)
    assert.are.same({ 1, 2, 3, 4, 5, 6 }, order)
    assert.are.equal(2, sem.free)
  end)
end)
