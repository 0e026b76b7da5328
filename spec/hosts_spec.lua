-- The scheduler's host contract, the watched engine (libcurl's sockets and timer recorded in C
-- and driven from Lua) and vidu.hosts.luv on a real luv loop, against a test server on
-- loopback. The hosts themselves (headless Neovim, nginx with ngx_lua, a C frame loop) run in
-- `make test-hosts`. Nothing here asserts a timing.
local core = require("vidu.core")
local scheduler = require("vidu.scheduler")
local testserver = require("support.testserver_process")
local util = require("support.util")

local DEADLINE = 90 -- generous, for valgrind

describe("hosts", function()
  local srv
  setup(function() srv = testserver.start() end)
  teardown(function() if srv then srv:stop() end end)

  local function url(path) return srv.url .. path end

  describe("a watched engine", function()
    it("records libcurl's socket wishes and timer, and runs on socket_action alone", function()
      local e = core.engine{}
      e:watch()
      local id = e:request{ url = url("/slow?ms=50") }
      -- request() only arms libcurl's timer (at once); no socket yet.
      assert.are.equal(0, e:timeout())
      assert.are.same({}, e:sockets())
      -- Drive it like a host would: a poll of the wished sockets is engine:wait's job here,
      -- so use socket_action by hand with the wishes we were given.
      local wanted, seen_remove, result = {}, false, nil
      local deadline = core.now() + DEADLINE
      while not result do
        assert(core.now() < deadline, "deadline passed")
        local done
        if e:timeout() == 0 then
          done = e:socket_action()
        else
          -- Readiness unknown without a poller: tell libcurl every wished socket may be
          -- ready; it reads what is there and leaves the rest.
          done = {}
          for fd, ev in pairs(wanted) do
            for _, item in ipairs(e:socket_action(fd, ev)) do done[#done + 1] = item end
          end
          if next(wanted) == nil then e:wait(5) end
        end
        local wishes = e:sockets()
        for i = 1, #wishes, 2 do
          assert.is_number(wishes[i])
          assert.matches("^[rw]*$", wishes[i + 1] == "remove" and "" or wishes[i + 1] == "none" and ""
            or wishes[i + 1])
          if wishes[i + 1] == "remove" then
            wanted[wishes[i]] = nil
            seen_remove = true
          elseif wishes[i + 1] ~= "none" then
            wanted[wishes[i]] = wishes[i + 1]
          end
        end
        for _, item in ipairs(done) do if item.id == id then result = item end end
      end
      assert.is_true(result.ok)
      assert.are.equal(200, result.status)
      assert.are.equal("slow", result.body)
      -- The transfer is over: libcurl gave its socket back.
      assert.is_true(seen_remove)
      assert.are.equal(0, e:pending())
      e:close()
    end)

    it("step and wait still drive it without a host (wait polls the wished sockets)", function()
      local e = core.engine{}
      e:watch()
      local ids = {}
      for i = 1, 20 do ids[i] = e:request{ url = url("/slow?ms=" .. (i * 3)) } end
      local results = util.drive(e, ids, DEADLINE)
      for i = 1, 20 do
        assert.is_true(results[ids[i]].ok)
        assert.are.equal("slow", results[ids[i]].body)
      end
      e:close()
    end)

    it("can be watched while transfers are already running", function()
      local e = core.engine{}
      local ids = {}
      for i = 1, 5 do ids[i] = e:request{ url = url("/slow?ms=100") } end
      e:step()
      e:watch()
      local results = util.drive(e, ids, DEADLINE)
      for i = 1, 5 do assert.are.equal("slow", results[ids[i]].body) end
      e:close()
    end)

    it("refuses socket_action before watch and bad events", function()
      local e = core.engine{}
      assert.has_error(function() e:socket_action() end,
        "engine:socket_action: the engine is not watched (call watch())")
      e:watch()
      assert.has_error(function() e:socket_action(3, "x") end)
      assert.has_error(function() e:socket_action(-1, "r") end)
      -- An unknown socket is nothing to libcurl.
      assert.are.same({}, e:socket_action(100000, "r"))
      e:close()
    end)

    it("closes with transfers in flight and wishes recorded", function()
      local e = core.engine{}
      e:watch()
      for _ = 1, 4 do e:request{ url = url("/hang") } end
      for _ = 1, 5 do e:wait(10) end
      e:close()
      assert.has_error(function() e:sockets() end, "attempt to use a closed engine")
    end)
  end)

  describe("the scheduler's host contract", function()
    -- A host that records what it was told and drives the scheduler from a plain loop.
    local function recording_host()
      return {
        name = "the test host",
        calls = {},
        later = function(self, s) self.calls[#self.calls + 1] = s == nil and "nil" or s end,
      }
    end

    it("step runs coroutines for about its budget and returns 0 while more are ready", function()
      local s = scheduler.new()
      local ran = 0
      for _ = 1, 200 do
        s:spawn(function()
          local t = core.now()
          while core.now() - t < 0.001 do end -- 1 ms of work
          ran = ran + 1
        end)
      end
      local wait = s:step(0.005)
      assert.are.equal(0, wait)
      assert.is_true(ran >= 1 and ran < 200)
      -- A zero budget still makes progress: one resume per step.
      local before = ran
      assert.are.equal(0, s:step(0))
      assert.are.equal(before + 1, ran)
      while s:step(1) do end
      assert.are.equal(200, ran)
      assert.has_error(function() s:step(-1) end, "vidu.step: budget must be a number of seconds >= 0")
      assert.has_error(function() s:step("x") end, "vidu.step: budget must be a number of seconds >= 0")
    end)

    -- A scheduler on a clock that only its resumes move: `count` coroutines, the i-th of
    -- which costs cost(i) seconds. -> the scheduler, the clock, how many ran.
    local function costed(count, cost)
      local clock, n = 0, 0
      local s = scheduler.new{ now = function() return clock end }
      for _ = 1, count do
        s:spawn(function()
          n = n + 1
          clock = clock + cost(n)
        end)
      end
      return s, function() return clock end, function() return n end
    end

    it("step ends inside its budget when resumes cost unlike amounts", function()
      -- Most resumes cost 0.1 ms, every fourth 0.9 ms (a submit among waits). Judged by the
      -- average alone, a step started its last resume when the average fitted and overran by
      -- what that resume cost above it: 49 of its 50 steps did.
      local s, clock, ran = costed(400, function(i) return i % 4 == 0 and 0.0009 or 0.0001 end)
      local over, steps = 0, 0
      repeat
        local t0 = clock()
        local wait = s:step(0.002)
        steps = steps + 1
        -- The first steps cannot know a dear resume before they meet a few: the estimate
        -- learns over them (with these costs the third step overran by 0.1 ms).
        if steps > 3 and clock() - t0 > 0.002 + 1e-12 then over = over + 1 end
      until wait ~= 0
      assert.are.equal(400, ran())
      assert.is_true(steps > 20)
      assert.are.equal(0, over)
    end)

    it("step's resumes end a twentieth of the budget early, for what the call does around them",
      function()
      -- Resumes of exactly 0.15 ms: the stop rule alone ran 13 of them, to 1.95 ms, leaving
      -- 0.05 ms for the plan, the return and the host's call; now 12, to 1.8 ms.
      local s, clock, ran = costed(180, function() return 0.00015 end)
      local steps = 0
      repeat
        local t0 = clock()
        local wait = s:step(0.002)
        steps = steps + 1
        local took = clock() - t0
        if wait == 0 then
          assert.is_true(took <= 0.0019 + 1e-12, "step " .. steps .. " took " .. took)
          assert.is_true(took >= 0.0017 - 1e-12, "step " .. steps .. " took " .. took)
        end
      until wait ~= 0
      assert.are.equal(180, ran())
    end)

    it("a round of resumes starts at most 8 new connections; the rest start in later rounds",
      function()
      -- The engine's pass after a round connects what the round started, so a burst of
      -- submits (fresh connections) is spread over steps; requests that may ride a pooled
      -- connection are not held back.
      local s = scheduler.new()
      local e = s:engine()
      local fresh, pooled = 0, 0
      s.engine = function()
        return setmetatable({
          request = function(_, spec)
            if spec.fresh_connect then fresh = fresh + 1 else pooled = pooled + 1 end
            return e:request(spec)
          end,
        }, { __index = function(_, k) return function(_, ...) return e[k](e, ...) end end })
      end
      local bodies = {}
      for i = 1, 20 do
        s:spawn(function()
          local b = s:transfer{ url = url("/echo"), method = "POST", body = "submit " .. i,
            fresh_connect = true }.body
          bodies[#bodies + 1] = b
        end)
      end
      for _ = 1, 12 do
        s:spawn(function()
          local b = s:transfer{ url = url("/status/200") }.body
          bodies[#bodies + 1] = b
        end)
      end
      local per_step, most, pooled_first = {}, 0, nil
      local deadline = core.now() + DEADLINE
      repeat
        assert(core.now() < deadline, "deadline passed")
        local before = fresh
        local wait = s:step(1) -- a budget that never ends a round early
        per_step[#per_step + 1] = fresh - before
        pooled_first = pooled_first or pooled
        if fresh - before > most then most = fresh - before end
        -- A host's sleep between frames (engine:wait would take the finished transfers).
        if wait and wait > 0 then util.luv().sleep(math.ceil(math.min(wait, 0.01) * 1000)) end
      until wait == nil
      assert.are.equal(8, per_step[1])
      assert.are.equal(12, pooled_first)
      assert.are.equal(8, most)
      assert.are.equal(20, fresh)
      assert.are.equal(32, #bodies)
      local seen = {}
      for _, b in ipairs(bodies) do seen[b] = (seen[b] or 0) + 1 end
      for i = 1, 20 do assert.are.equal(1, seen["submit " .. i], "submit " .. i) end
      assert.are.equal(12, seen["status 200"])
      -- A plain (blocking) run spreads them the same way, round by round, and finishes them.
      local n, most_round, at_round = 0, 0, fresh
      local tick = s._tick
      s._tick = function(...)
        if fresh - at_round > most_round then most_round = fresh - at_round end
        at_round = fresh
        return tick(...)
      end
      s:run(function()
        for i = 1, 20 do
          s:spawn(function()
            if s:transfer{ url = url("/echo"), method = "POST", body = tostring(i),
              fresh_connect = true }.body == tostring(i) then n = n + 1 end
          end)
        end
      end)
      assert.are.equal(20, n)
      assert.are.equal(40, fresh)
      assert.are.equal(8, most_round)
    end)

    it("tells the host when to step; a spawn from outside asks for a step at once", function()
      local s = scheduler.new()
      local host = recording_host()
      s:attach(host)
      assert.are.same({ "nil" }, host.calls) -- nothing pending
      local woke = false
      s:spawn(function() s:sleep(0.3) woke = true end)
      assert.are.same({ "nil", 0 }, host.calls)
      s:spawn(function() end) -- already asked: not again
      assert.are.equal(2, #host.calls)
      s:step()
      local later = host.calls[#host.calls]
      assert.is_true(later > 0 and later <= 0.3)
      -- Do what the host was asked: step when the time comes.
      local deadline = core.now() + DEADLINE
      while not woke do
        assert(core.now() < deadline, "deadline passed")
        later = host.calls[#host.calls]
        if later ~= "nil" and later > 0 then s:engine():wait(math.ceil(later * 1000)) end
        s:step()
      end
      assert.are.equal("nil", host.calls[#host.calls])
      s:detach()
    end)

    it("a wait outside a coroutine raises once attached, and blocks again after detach", function()
      local s = scheduler.new()
      s:attach(recording_host())
      local cases = {
        { "sleep", function() s:sleep(0.01) end, "a sleep" },
        { "run", function() s:run(function() end) end, "vidu.run" },
        { "gather", function() s:gather({ function() end }) end, "vidu.gather" },
        { "transfer", function() s:transfer{ url = url("/slow?ms=1") } end, "a transfer" },
        { "semaphore", function()
          local sem = s:semaphore(0)
          sem:acquire()
        end, "a connection slot" },
        { "job", function() s:spawn(function() s:sleep(1) end):wait() end, "a job" },
      }
      for _, c in ipairs(cases) do
        local ok, err = pcall(c[2])
        assert.is_false(ok, c[1])
        assert.are.equal("vidu: waiting for " .. c[3] .. " outside a vidu coroutine would block" ..
          " the test host's loop; wait inside vidu.spawn(function() ... end)", err)
      end
      -- Nothing was started by the refused waits: no transfer, no queued slot.
      assert.are.equal(0, s:stats().transfers)
      s:detach()
      s:sleep(0.01)
      assert.has_error(function() s:attach({}) end,
        "scheduler:attach expects a host with a later(seconds) method")
    end)

    it("pcall inside a coroutine lets a wait inside it yield, on every Lua", function()
      local s = scheduler.new()
      local log = {}
      s:run(function()
        -- The wait inside pcall ends only when the other coroutine, which can run only if the
        -- wait yielded, has done its three steps.
        local ev = s:event()
        s:spawn(function()
          for i = 1, 3 do log[#log + 1] = "other" .. i s:sleep(0.001) end
          s:signal(ev)
        end)
        local ok, a, b = s:pcall(function(x)
          assert(s:sleep(30, ev) == "event")
          return x, "two"
        end, "one")
        log[#log + 1] = "pcall"
        assert.are.same({ true, "one", "two" }, { ok, a, b })
        local ok2, err = s:pcall(function()
          s:sleep(0.01)
          error({ code = 7 })
        end)
        assert.is_false(ok2)
        assert.are.same({ code = 7 }, err)
        -- Nested, with a plain coroutine.yield inside.
        local ok3, v = s:pcall(function()
          return select(2, s:pcall(function() coroutine.yield() s:sleep(0.001) return "deep" end))
        end)
        assert.are.same({ true, "deep" }, { ok3, v })
      end)
      assert.are.same({ "other1", "other2", "other3", "pcall" }, { log[1], log[2], log[3], log[4] })
      -- Outside any coroutine it is pcall.
      assert.are.same({ false, "x" }, { s:pcall(error, "x", 0) })
      assert.are.same({ true, 3 }, { require("vidu").pcall(function() return 3 end) })
    end)

    it("pcall_apart runs fn in a coroutine of its own that waits as its caller", function()
      local s = scheduler.new()
      local client = require("vidu").client("fal", { api_key = "k", base_url = url(""), scheduler = s })
      s:run(function()
        local outer = coroutine.running()
        local ok, inner, cur, seen = s:pcall_apart(function(x)
          s:sleep(0.001) -- a wait inside parks the caller and comes back here
          return coroutine.running(), s:current(), client:_deadline(), x
        end, "arg")
        assert.is_true(ok)
        assert.are_not.equal(outer, inner)
        assert.are.equal(outer, cur)
        assert.is_nil(seen)
        -- A deadline the caller set (client:_within) holds for the requests made apart.
        local deadline = s:time() + 5
        local r = { client:_within(deadline, function()
          return s:pcall_apart(function() return client:_deadline() end)
        end) }
        assert.are.same({ true, deadline }, r)
        -- Errors come back as from pcall, the caller's own deadline entry undisturbed.
        assert.are.same({ false, "boom" }, { s:pcall_apart(error, "boom", 0) })
        assert.is_nil(client:_deadline())
      end)
      assert.are.same({ false, "x" }, { s:pcall_apart(error, "x", 0) })
    end)
  end)

  describe("inside nginx's Lua module", function()
    it("the scheduler uses ngx_lua's stock coroutine functions where they are kept aside", function()
      -- ngx_lua keeps the stock functions as coroutine._create etc. and replaces the public
      -- ones with request-bound ones; here the public ones raise if the scheduler used them.
      local names = { "create", "resume", "yield", "status" }
      local C = coroutine
      local saved, calls = {}, 0
      for _, k in ipairs(names) do
        saved[k] = C[k]
        rawset(C, "_" .. k, function(...)
          calls = calls + 1
          return saved[k](...)
        end)
        rawset(C, k, function() error("the request-bound coroutine." .. k .. " was used", 2) end)
      end
      local original = package.loaded["vidu.scheduler"]
      package.loaded["vidu.scheduler"] = nil
      local ok, res = pcall(function()
        local s = require("vidu.scheduler").new()
        return s:run(function()
          local job = s:spawn(function() s:sleep(0.001) return "child" end)
          return select(2, job:wait()) .. "+parent"
        end)
      end)
      for _, k in ipairs(names) do
        rawset(C, k, saved[k])
        rawset(C, "_" .. k, nil)
      end
      package.loaded["vidu.scheduler"] = original
      assert(ok, res)
      assert.are.equal("child+parent", res)
      assert.is_true(calls > 0)
    end)

    it("vidu.hosts.ngx refuses to start outside nginx, and wait before init", function()
      local ngxhost = require("vidu.hosts.ngx")
      assert.has_error(function() ngxhost.init() end,
        "vidu.hosts.ngx.init: not inside nginx's Lua module")
      assert.has_error(function() ngxhost.wait({ wait = function() end }) end,
        "vidu.hosts.ngx.wait: call vidu.hosts.ngx.init() in init_worker_by_lua first")
    end)
  end)

  describe("vidu.hosts.luv", function()
    local uv = util.luv()
    local luvhost = require("vidu.hosts.luv")

    -- Runs the luv loop until it has nothing left to do, with a watchdog against a hang.
    local function run_loop()
      local dog = uv.new_timer()
      local fired = false
      -- A timer counts from the loop's cached clock, last read when the loop last ran: after
      -- a long spec without the loop (faults_spec under valgrind takes minutes) the watchdog
      -- would be due at once and stop the loop before anything ran.
      uv.update_time()
      dog:start(DEADLINE * 1000, 0, function() fired = true uv.stop() end)
      dog:unref()
      uv.run()
      dog:close()
      uv.run("nowait")
      assert.is_false(fired, "the luv loop did not finish in time")
    end

    it("drives transfers from poll handles and a timer, and stops when idle", function()
      local s = scheduler.new()
      local readies = 0
      local socket_ready = s.socket_ready
      s.socket_ready = function(...)
        readies = readies + 1
        return socket_ready(...)
      end
      local host = luvhost.attach(uv, { scheduler = s })
      local bodies, ticks = {}, 0
      for i = 1, 30 do
        s:spawn(function()
          local item = s:transfer{ url = url("/slow?ms=" .. (10 + i)) }
          s:sleep(0.005)
          bodies[i] = item.body
        end)
      end
      -- A host timer of its own runs meanwhile; it must keep ticking.
      local tick = uv.new_timer()
      tick:start(5, 5, function()
        ticks = ticks + 1
        if #bodies == 30 then tick:stop() tick:close() end
      end)
      run_loop()
      for i = 1, 30 do assert.are.equal("slow", bodies[i]) end
      assert.is_true(ticks > 0)
      -- The answers came through the poll handles, not a polling timer.
      assert.is_true(readies >= 30)
      -- The loop ended by itself: no handle of ours is left active.
      assert.are.same({}, host.polls)
      -- Work spawned later, once idle, is driven too.
      local later
      s:spawn(function() later = s:transfer{ url = url("/slow?ms=5") }.body end)
      run_loop()
      assert.are.equal("slow", later)
      host:detach()
      -- Detached, the engine stays watched and drives itself: blocking waits work again, and
      -- libcurl's wishes no longer go anywhere (nor pile up).
      assert.are.equal("slow", s:transfer{ url = url("/slow?ms=5") }.body)
      assert.are.same({}, s:engine():sockets())
      assert.are.same({}, host.polls)
    end)

    it("a wait outside a coroutine raises instead of freezing the loop", function()
      local s = scheduler.new()
      local host = luvhost.attach(uv, { scheduler = s })
      local ok, err = pcall(s.sleep, s, 1)
      assert.is_false(ok)
      assert.matches("would block the luv's loop", err, 1, true)
      host:detach()
      run_loop()
    end)

    it("delivers through opts.defer, as Neovim's vim.schedule does", function()
      local s = scheduler.new()
      local queue = {}
      local idle = uv.new_idle()
      local function defer(fn)
        queue[#queue + 1] = fn
        idle:start(function()
          idle:stop()
          local q = queue
          queue = {}
          for _, f in ipairs(q) do f() end
        end)
      end
      local host = luvhost.attach(uv, { scheduler = s, defer = defer })
      local got = {}
      for i = 1, 10 do
        s:spawn(function() got[i] = s:transfer{ url = url("/big?bytes=200000") }.bytes end)
      end
      run_loop()
      for i = 1, 10 do assert.are.equal(200000, got[i]) end
      host:detach()
      idle:close()
      run_loop()
    end)
  end)
end)
