-- vidu.pace: where a task's polls go, learned from the durations of its kind, and how one
-- task's finish wakes the others. The schedule specs run the pure functions (Pace.build,
-- Pace.plan) on samples from a seeded lognormal with jitter fixed, so every figure is exact.
local Pace = require("vidu.pace")
local scheduler = require("vidu.scheduler")
local vidu = require("vidu")
local emulator = require("support.emulator")

-- A pace whose jitter is fixed by `r` (0.5 = no jitter).
local function pace_with(r, s)
  return Pace.new(s or scheduler.new(), function() return r end)
end

-- n durations from a lognormal (median, sigma), from a seeded generator (Park-Miller).
local function lognormal(n, median, sigma, seed)
  local state = seed or 7
  local function rand()
    state = (state * 16807) % 2147483647
    return state / 2147483647
  end
  local out = {}
  for i = 1, n do
    local z = math.sqrt(-2 * math.log(rand())) * math.cos(2 * math.pi * rand())
    out[i] = median * math.exp(sigma * z)
  end
  return out
end

local function sorted_copy(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  return s
end

local NO_JITTER = { random = function() return 0.5 end, factor = 1.5, max = 15 }

-- The poll ages of one task under table `t`, from its submit until `until_age`: each poll sees
-- it still running. -> list of { age, overdue }.
local function polls(t, until_age, opts)
  opts = opts or NO_JITTER
  local out, age, overdue = {}, 0, 0
  while age < until_age and #out < 1000 do
    local d, late = Pace.plan(t, age, age, { random = opts.random, factor = opts.factor,
      max = opts.max, overdue = overdue })
    age = age + d
    if late then overdue = overdue + 1 end
    out[#out + 1] = { age = age, overdue = late }
  end
  return out
end

describe("vidu.pace", function()
  it("jitters each gap by at most 20%", function()
    assert.are.equal(10, pace_with(0.5):jitter(10))
    assert.are.equal(8, pace_with(0):jitter(10))
    assert.is_true(math.abs(pace_with(0.999999):jitter(10) - 12) < 1e-4)
  end)

  it("keys a task by model, duration and resolution; unknown params by the client", function()
    local a = Pace.key{ model = "viduq1", duration = 5, resolution = "1080p", prompt = "x" }
    assert.are.equal(a, Pace.key{ model = "viduq1", duration = 5, resolution = "1080p", seed = 3 })
    assert.are_not.equal(a, Pace.key{ model = "viduq1", duration = 8, resolution = "1080p" })
    assert.are_not.equal(a, Pace.key{ model = "viduq2", duration = 5, resolution = "1080p" })
    assert.are_not.equal(a, Pace.key{ model = "viduq1", duration = 5, resolution = "720p" })
    assert.are.equal(Pace.CLIENT, Pace.key(nil))
  end)

  it("keeps the schedule's gap while nothing of the task's kind is known", function()
    local p = pace_with(0.5)
    local ticket = p:ticket("m|5|720p", 0)
    local d, late = p:delay(ticket, 3, 5, 1.5, 0, 15)
    assert.are.equal(5, d)
    assert.is_false(late)
  end)

  it("spends a kind's cold start on its 16 oldest waiting tasks; the rest sleep the longest gap", function()
    local p = pace_with(0.5)
    local tickets = {}
    for i = 1, 20 do tickets[i] = p:ticket("k", 0) end
    local other = p:ticket("other", 0) -- another kind has its own scouts
    -- The schedule's gap is 2 s, its longest 15 s.
    for i = 1, 16 do assert.are.equal(2, (p:delay(tickets[i], 1, 2, 1.5, 0, 15))) end
    for i = 17, 20 do assert.are.equal(15, (p:delay(tickets[i], 1, 2, 1.5, 0, 15))) end
    assert.are.equal(2, (p:delay(other, 1, 2, 1.5, 0, 15)))
    -- A scout gone (failed: nothing learned) makes the next task in line a scout.
    p:finish(tickets[3], 4, false)
    assert.are.equal(2, (p:delay(tickets[17], 4, 2, 1.5, 0, 15)))
    assert.are.equal(15, (p:delay(tickets[18], 4, 2, 1.5, 0, 15)))
    -- A gap already past the longest (a schedule without one, or the deadline's) stays.
    assert.are.equal(20, (p:delay(tickets[18], 4, 20, 1.5, 0, 15)))
    assert.are.equal(2, (p:delay(tickets[18], 4, 2, 1.5, 0, nil)))
    -- Scouts that end teaching nothing hand over: every 8th such end wakes the kind's
    -- sleepers to plan again (the 9th, here, after the one above and 7 more).
    local ev = p:event(tickets[20])
    for i = 4, 10 do
      assert.is_false(ev.fired)
      p:finish(tickets[i], 5, false)
    end
    assert.is_true(ev.fired)
    assert.are.equal(2, (p:delay(tickets[20], 5, 2, 1.5, 0, 15))) -- now among the 16 oldest
    -- Once the kind has learned a duration, the plan is the pace's for every task alike.
    p:finish(tickets[1], 10, true)
    p:polled(tickets[20], 9)
    assert.are.equal(0, (p:delay(tickets[20], 10.1, 2, 1.5, 0, 15)))
  end)

  it("a scout's gap shrinks with the tasks waiting behind it, down to the shortest gap", function()
    local p = pace_with(0.5) -- no jitter
    local tickets = {}
    for i = 1, 1000 do tickets[i] = p:ticket("k", 0) end
    -- The schedule's gap 8 s, longest 10 s: with 1,000 waiting a scout looks every
    -- 10 * sqrt(16 / 1000) = 1.26 s; a task behind the scouts still sleeps 10 s.
    local d = p:delay(tickets[1], 8, 8, 1.5, 0, 10)
    assert.is_true(math.abs(d - 10 * math.sqrt(16 / 1000)) < 1e-9, d)
    assert.are.equal(10, (p:delay(tickets[500], 8, 8, 1.5, 0, 10)))
    -- A gap already shorter stays; without a longest gap nothing changes.
    assert.are.equal(1, (p:delay(tickets[1], 1, 1, 1.5, 0, 10)))
    assert.are.equal(8, (p:delay(tickets[1], 8, 8, 1.5, 0, nil)))
    -- Never under the shortest gap (0.5 s), however many wait.
    for _ = 1, 9000 do p:ticket("k", 0) end
    assert.are.equal(0.5, (p:delay(tickets[1], 8, 8, 1.5, 0, 10)))
    -- 16 waiting or fewer: the schedule's own gap.
    local q = pace_with(0.5)
    local few = {}
    for i = 1, 16 do few[i] = q:ticket("k", 0) end
    assert.are.equal(8, (q:delay(few[1], 8, 8, 1.5, 0, 10)))
  end)

  describe("over lognormal durations (median 30 s, sigma 0.5, 64 samples)", function()
    local samples = lognormal(64, 30, 0.5)
    local sorted = sorted_copy(samples)
    local t = Pace.build(samples, 1, {})
    local list = polls(t, 200)
    local q05, q25, q75, q95 = sorted[4], sorted[16], sorted[48], sorted[61]

    it("sleeps until the earliest likely finish", function()
      -- One sleep to where finishes begin (past the schedule's 15 s gap if need be), not
      -- after the first quarter of them.
      assert.is_true(list[1].age >= t.first and list[1].age >= sorted[1], list[1].age)
      assert.is_true(list[1].age < q25, list[1].age)
    end)

    it("puts most polls where finishes are likely, the densest between the quartiles", function()
      local inside, early, middle = 0, {}, {}
      for i, p in ipairs(list) do
        if p.age >= q05 and p.age <= q95 then inside = inside + 1 end
        local gap = i > 1 and p.age - list[i - 1].age
        if gap and p.age <= q05 then early[#early + 1] = gap end
        if gap and p.age >= q25 and p.age <= q75 then middle[#middle + 1] = gap end
      end
      local function mean(l)
        local s = 0
        for _, v in ipairs(l) do s = s + v end
        return s / #l
      end
      local before = 0
      for _, p in ipairs(list) do if p.age < q05 then before = before + 1 end end
      assert.is_true(inside >= 2 * before, inside .. " inside, " .. before .. " before")
      assert.is_true(#middle >= 3, #middle)
      assert.is_true(#early == 0 or mean(middle) < mean(early))
      -- About one poll per 1-5 s in the middle: neither the SDKs' 0.5 s nor a 15 s backoff.
      assert.is_true(mean(middle) > 1 and mean(middle) < 5, mean(middle))
    end)

    it("never polls a task twice within the floor of half a second", function()
      local jittery = { random = function() return 0 end, factor = 1.5, max = 15 }
      local l = polls(t, 200, jittery)
      for i = 2, #l do assert.is_true(l[i].age - l[i - 1].age >= 0.5 - 1e-9) end
    end)

    it("backs off past the likely range, by the factor, never beyond the longest gap", function()
      local over, prev = 0, nil
      for i, p in ipairs(list) do
        if p.overdue then
          over = over + 1
          assert.is_true(list[i - 1].age >= q95, list[i - 1].age)
          local gap = p.age - list[i - 1].age
          assert.is_true(gap <= 15 + 1e-9, gap)
          if prev and prev < 15 - 1e-9 then assert.is_true(gap > prev) end
          prev = gap
        end
      end
      assert.is_true(over >= 3, over)
      assert.are.equal(15, prev) -- reached the cap and stayed there
    end)

    it("a task last seen long ago polls at once once its age is likely past its finish", function()
      local d = Pace.plan(t, 1, 35, NO_JITTER)
      assert.is_true(d < 0.5, d)
    end)
  end)

  it("fixed durations: polls come right after the known duration", function()
    local t = Pace.build({ 10.02, 10.05, 10.04, 10.1, 10.03 }, 1, {})
    local l = polls(t, 10.2)
    assert.is_true(l[1].age > 9 and l[1].age <= 10.3, l[1].age)
    assert.is_true(#l <= 3, #l)
  end)

  it("counts the tasks still running: a batch's first finishes are not its whole story", function()
    -- Five finishes at 10-14 s while 95 tasks of the batch were seen running at 15 s.
    local samples = { 10, 11, 12, 13, 14 }
    local alive = {}
    for i = 1, 95 do alive[i] = 15 end
    local with = Pace.build(samples, 1, alive)
    local without = Pace.build(samples, 1, {})
    assert.is_true(Pace.survival(with, 15) > 0.8, Pace.survival(with, 15))
    assert.is_true(Pace.survival(without, 15) < 0.05, Pace.survival(without, 15))
    local d, late = Pace.plan(with, 15, 15, NO_JITTER)
    assert.is_false(late)
    assert.is_true(d >= 0.5 and d <= 15, d)
    local _, late2 = Pace.plan(without, 15, 15, NO_JITTER)
    assert.is_true(late2)
  end)

  it("the front of a batch looks again within 40% of its age, however few have finished", function()
    local alive = {}
    for i = 1, 999 do alive[i] = 8 end
    local t = Pace.build({ 8 }, 1, alive)
    local d = Pace.plan(t, 8, 8, NO_JITTER)
    assert.is_true(d > 0.5 and d <= 0.4 * 8 + 1e-9, d)
  end)

  it("a plan made again later never pushes the next poll out", function()
    local t = Pace.build(lognormal(64, 30, 0.5), 1, {})
    for _, seen in ipairs{ 20, 30, 45, 80 } do
      local first = seen + Pace.plan(t, seen, seen, NO_JITTER)
      for age = seen, first, 0.25 do
        local at = age + Pace.plan(t, seen, age, NO_JITTER)
        assert.is_true(at <= first + 1e-9, string.format("seen %g: at %g, then %g", seen, first, at))
      end
    end
  end)

  it("learns the middle between the last poll seen running and the one seen finished", function()
    local p = pace_with(0.5)
    local ticket = p:ticket("k", 0)
    p:polled(ticket, 8)
    p:finish(ticket, 10, true)
    assert.are.same({ 9 }, p.kinds.k.samples)
    assert.are.equal(10, p.kinds.k.min) -- the age by which such a task was surely done
  end)

  it("keeps kinds apart: each task plans from its own kind's durations", function()
    local s = scheduler.new()
    local p = pace_with(0.5, s)
    for _, d in ipairs(lognormal(20, 10, 0.1, 3)) do p:finish(p:ticket("short", 0), d, true) end
    for _, d in ipairs(lognormal(20, 60, 0.1, 5)) do p:finish(p:ticket("long", 0), d, true) end
    local a, b = p:ticket("short", 0), p:ticket("long", 0)
    local da = p:delay(a, 2, 15, 1.5, 0, 15)
    local db = p:delay(b, 2, 15, 1.5, 0, 15)
    assert.is_true(da < 8, da)  -- towards the 10 s kind's range
    assert.is_true(db > 30, db) -- sleeps towards the 60 s kind's range, past the 15 s gap
    -- The client-wide kind learned both (for attached tasks).
    assert.are.equal(40, #p.kinds[Pace.CLIENT].samples)
  end)

  it("keeps its memory bounded: 64 samples a kind, 32 kinds", function()
    local p = pace_with(0.3)
    for i = 1, 5000 do p:finish(p:ticket("k", 0), 1 + i % 50, true) end
    assert.are.equal(64, #p.kinds.k.samples)
    assert.are.equal(1024, p.kinds.k.seen)
    for i = 1, 100 do p:ticket("kind" .. i, 0) end
    local n = 0
    for _ in pairs(p.kinds) do n = n + 1 end
    assert.are.equal(32, n)
    assert.is_not_nil(p.kinds[Pace.CLIENT])
  end)

  it("learns only from successes of submitted tasks, and forgets a finished ticket", function()
    local p = pace_with(0.5)
    local t1 = p:ticket("k", 0)
    assert.is_true(p.kinds.k.tickets[t1])
    p:finish(t1, 5, false)
    assert.is_nil(p.kinds.k.tickets[t1])
    assert.are.equal(0, #p.kinds.k.samples)
    assert.is_nil(p.estimate)
    p:finish(p:ticket("k", 0), 0, true) -- no age: nothing to learn
    assert.are.equal(0, #p.kinds.k.samples)
    p:finish(p:ticket("k", 1), 13, true)
    assert.are.same({ 12 }, p.kinds.k.samples)
    assert.are.equal(12, p.estimate)
  end)

  it("wakes the tasks of a kind when it learns its first or a shorter duration", function()
    local s = scheduler.new()
    local p = Pace.new(s)
    local ticket = p:ticket("k", 0)
    local other = p:ticket("other", 0)
    local first = p:event(ticket)
    local woke
    s:run(function()
      local sleeper = s:spawn(function() return s:sleep(3600, p:event(ticket)) end)
      s:spawn(function()
        s:sleep(0.01)
        p:finish(p:ticket("k", 0), 5, true)
      end)
      local ok, how = sleeper:wait()
      assert.is_true(ok)
      woke = how
    end)
    assert.are.equal("event", woke)
    assert.is_true(first.fired)
    assert.is_false(p:event(ticket).fired)
    assert.is_false(p:event(other).fired) -- another kind sleeps on
  end)

  it("wakes sleepers again only on a shorter duration or when the count doubles", function()
    local p = Pace.new(scheduler.new())
    p:finish(p:ticket("k", 0), 5, true)
    p:finish(p:ticket("k", 0), 6, true) -- the second: doubled
    local ticket = p:ticket("k", 0)
    local ev = p:event(ticket)
    p:finish(p:ticket("k", 0), 7, true) -- the third, not shorter: sleep on
    assert.are.equal(ev, p:event(ticket))
    assert.is_false(ev.fired)
    p:finish(p:ticket("k", 0), 8, true) -- the fourth: doubled
    assert.is_true(ev.fired)
    ev = p:event(ticket)
    p:finish(p:ticket("k", 0), 4, true) -- shorter
    assert.is_true(ev.fired)
  end)

  it("plans no poll before the shortest duration seen, but for one task in 16", function()
    -- Learned middles of 9.6-10.1 s, and 10.2 s the youngest age a task was seen done at:
    -- the hazard's window reaches below 10.2, where with durations alike every poll saw the
    -- task running (WaveSpeed, 1,000 tasks of 10 s: ~0.7 such polls per task).
    local t = Pace.build({ 9.6, 9.9, 9.7, 10.1, 9.8, 10.0, 9.75, 9.95 }, 1, {})
    t.min = 10.2
    local explorer = { random = NO_JITTER.random, factor = 1.5, max = 15, explore = true }
    for _, seen in ipairs({ 0, 5, 8, 9, 9.5 }) do
      local d = Pace.plan(t, seen, seen, NO_JITTER)
      assert.is_true(seen + d >= 10.2 - 1e-9, seen .. ": " .. (seen + d))
      -- An explorer keeps the hazard's plan: it finds a shorter duration if there is one.
      local e = Pace.plan(t, seen, seen, explorer)
      assert.is_true(seen + e >= seen + 0.5 - 1e-9 and seen + e <= 10.2, seen .. ": " .. (seen + e))
    end
    assert.is_true(Pace.plan(t, 9, 9, explorer) < Pace.plan(t, 9, 9, NO_JITTER))
    -- Middles of 9.0-9.2 s make a task of 9.7 s overdue, still younger than 10.2 s: it
    -- waits for 10.2 s as well.
    local tight = Pace.build({ 9.0, 9.1, 9.2, 9.05, 9.15, 9.1, 9.12, 9.08 }, 1, {})
    tight.min = 10.2
    local late, overdue = Pace.plan(tight, 8, 9.7, NO_JITTER)
    assert.is_true(overdue)
    assert.is_true(9.7 + late >= 10.2 - 1e-9, 9.7 + late)
    -- Through a pace: tasks seen running at 9.0-9.8 s and done at 10.2-10.5 s; of 64 more
    -- seen running at 9 s, one in 16 (by the order their waits began) is an explorer.
    local p = pace_with(0.5)
    for _, d in ipairs({ { 9.0, 10.2 }, { 9.6, 10.4 }, { 9.3, 10.3 }, { 9.8, 10.5 },
      { 9.1, 10.25 }, { 9.5, 10.3 }, { 9.4, 10.45 }, { 9.2, 10.35 } }) do
      local ticket = p:ticket("k", 0)
      p:polled(ticket, d[1])
      p:finish(ticket, d[2], true)
    end
    local explorers = 0
    for _ = 1, 64 do
      local ticket = p:ticket("k", 0)
      p:polled(ticket, 9)
      local d = p:delay(ticket, 9, 15, 1.5, 0, 15)
      assert.is_true(9 + d >= 9.5 - 1e-9)
      if 9 + d < 10.2 - 1e-9 then explorers = explorers + 1 end
    end
    assert.are.equal(4, explorers)
  end)

  it("the first finish of a kind tells a task last seen before that age to look now", function()
    local p = pace_with(0.5)
    p:finish(p:ticket("k", 0), 10, true)
    local ticket = p:ticket("k", 0)
    p:polled(ticket, 9)
    assert.are.equal(0, (p:delay(ticket, 10.1, 15, 1.5, 0, 15)))
    p:polled(ticket, 10.1) -- seen running after it: plans as usual
    assert.is_true(p:delay(ticket, 10.1, 15, 1.5, 0, 15) >= 0.5)
  end)

  it("plans on a fresh table once a burst of finishes has doubled what the kind knows", function()
    -- A batch's first finishes come together: the first builds the table, 16 more follow
    -- within the rebuild interval. A task planning after them plans on all 17.
    local p = pace_with(0.5)
    local tickets = {}
    for i = 1, 40 do tickets[i] = p:ticket("k", 0) end
    for i = 1, 17 do p:polled(tickets[i], 9) end
    p:finish(tickets[1], 10, true)
    p:delay(tickets[30], 10, 8, 1.5, 0, 15)
    assert.are.equal(1, tickets[30].kind.table.n)
    for i = 2, 17 do p:finish(tickets[i], 10 + i / 1000, true) end
    p:delay(tickets[30], 10.05, 8, 1.5, 0, 15)
    assert.are.equal(17, tickets[30].kind.table.n)
  end)

  it("ends a plain sleep on its timer", function()
    local s = scheduler.new()
    local ev = s:event()
    assert.are.equal("timer", s:run(function() return s:sleep(0.01, ev) end))
    assert.are.equal("timer", s:sleep(0.01, ev)) -- blocking, outside any coroutine
  end)

  -- End to end: two batches of one kind against the emulator, each task with its own duration
  -- (lognormal, median 4 s, sigma 0.15, set per task through POST /_emulator/next). What is
  -- asserted does not depend on timing: the pace learns every success, and no task of the
  -- second batch is polled before the first batch's durations say a finish is possible (the
  -- scheduler can only make a poll later than planned, never earlier), while the schedule
  -- alone (first poll at 0.5 s) would have polled each one within 0.6 s.
  describe("end to end, varied durations on the emulator", function()
    local emu
    setup(function()
      emu = emulator.start{ config = { progress = "time", seconds = 4 } }
    end)
    teardown(function() if emu then emu:stop() end end)

    local N = 12
    local PARAMS = { image = "spec/fixtures/png_640x360.png", prompt = "pace", duration = 4 }

    -- Submits and waits for one batch -> tasks, failures.
    local function batch(client, durations)
      for _, d in ipairs(durations) do emu:next{ seconds = d } end
      local tasks, failures = {}, {}
      vidu.run(function()
        for i = 1, #durations do
          vidu.spawn(function()
            local p = {}
            for k, v in pairs(PARAMS) do p[k] = v end
            p.seed = i
            local task, err = client:submit(p)
            local ok
            if task then ok, err = task:wait{ timeout = 60 } end
            if ok then tasks[#tasks + 1] = task else failures[#failures + 1] = tostring(err) end
          end)
        end
      end)
      return tasks, failures
    end

    it("learns the durations of a kind and sleeps the next batch to where they begin", function()
      local client = vidu.client("wavespeed", { api_key = "pace-spec-key", base_url = emu.url,
        poll = { first = 0.5, factor = 1.5, max = 3 }, retry = { base = 0.02, cap = 0.2 } })
      local key = Pace.key(assert(client:check(PARAMS)))
      local durations = lognormal(2 * N, 4, 0.15, 11)
      local first = {}
      for i = 1, N do first[i] = durations[i] end
      local ok1, failed1 = batch(client, first)
      assert.are.same({}, failed1)
      assert.are.equal(N, #ok1)
      local kind = client.pace.kinds[key]
      assert.are.equal(N, kind.seen)
      assert.are.equal(N, #kind.samples)
      local spread = sorted_copy(kind.samples)
      assert.is_true(spread[N] - spread[1] > 0.5) -- the durations did vary

      local second = {}
      for i = N + 1, 2 * N do second[#second + 1] = durations[i] end
      local ok2, failed2 = batch(client, second)
      assert.are.same({}, failed2)
      assert.are.equal(N, #ok2)
      assert.are.equal(2 * N, kind.seen)
      -- On the emulator's clock: each task's creation, and its first status poll.
      local born = {}
      for _, t in ipairs(emu:control("GET", "/_emulator/tasks").tasks) do
        born[tostring(t.id)] = t.created_at
      end
      for _, task in ipairs(ok2) do
        local polls_of = emu:requests{ method = "GET",
          path = "/api/v3/predictions/" .. task.id .. "/result" }
        assert.is_true(#polls_of >= 1)
        local earliest = math.huge
        for _, r in ipairs(polls_of) do if r.time < earliest then earliest = r.time end end
        local age = earliest - born[task.id]
        assert.is_true(age >= 1.2, string.format("task %s polled first at %.2f s", task.id, age))
      end
    end)
  end)
end)
