-- Vidu's task list (GET /ent/v2/tasks, platform.vidu.com/docs/tasks-list): the emulator's
-- list, and the client's batched polls through it, against the real emulator over loopback.
-- Every fallback must finish every task: a list that is absent (404), entries without a
-- state, a task missing from an answer, an answer that is not the list, a list that hangs.
-- luacheck: max line length 120
local vidu = require("vidu")
local scheduler = require("vidu.scheduler")
local emulator = require("support.emulator")

local KEY = "batch-key-0123456789"
local OTHER = "other-key-0123456789"
local URL_IMAGE = "https://example.com/in.png"
local LIST = "/ent/v2/tasks"
local CREATIONS = "^/ent/v2/tasks/[^/]+/creations$"

local emu

local function client_for(opts)
  local o = {
    api_key = KEY, base_url = emu.url, poll = { first = 0.05, max = 0.2, factor = 1.5 },
    retry = { base = 0.02, cap = 0.1 }, scheduler = scheduler.new(),
  }
  for k, v in pairs(opts or {}) do o[k] = v end
  return vidu.client("vidu", o)
end

-- The ids a logged list request asked for.
local function ids_of(entry)
  local ids = {}
  for id in (entry.query or ""):gmatch("task_ids%%5B%%5D=([^&]+)") do ids[#ids + 1] = id end
  return ids
end

local function lists() return emu:requests{ method = "GET", path = LIST } end
local function singles() return emu:requests{ method = "GET", match = CREATIONS } end

-- Submits n tasks and waits for all of them together: the tasks, and each wait's error.
local function submit_and_wait(c, n, wait_opts)
  local tasks, errs = {}, {}
  c.scheduler:run(function()
    for i = 1, n do
      c.scheduler:spawn(function()
        local task = assert(c:submit{ image = URL_IMAGE, prompt = "batch " .. i, seed = i })
        tasks[i] = task
        local ok, err = task:wait(wait_opts or { timeout = 60 })
        if not ok then errs[#errs + 1] = err end
      end)
    end
  end)
  return tasks, errs
end

-- Each task succeeded with the emulator's own video for it.
local function assert_all_right(tasks, n)
  assert.are.equal(n, #tasks)
  for _, t in ipairs(tasks) do
    assert.are.equal("succeeded", t.status)
    local truth = emu:task(t.id).task
    assert.are.equal("succeeded", truth.stage)
    assert.truthy(t.video_url:find(truth.video_url, 1, true), t.video_url .. " vs " .. truth.video_url)
  end
end

setup(function() emu = emulator.start{ seed = 11 } end)
teardown(function() if emu then emu:stop() end end)
before_each(function() emu:reset{ progress = "polls", polls = 3, outcome = "success" } end)

describe("the emulator's task list", function()
  local function submit(key)
    local r = emu:call("POST", "/ent/v2/img2video", { auth = "Token " .. (key or KEY),
      json = { model = "viduq1", images = { URL_IMAGE }, prompt = "list" } })
    assert.are.equal(200, r.status)
    return r.json.task_id
  end
  local function list(query, key)
    return emu:call("GET", LIST .. "?" .. query, { auth = "Token " .. (key or KEY) })
  end

  it("answers the tasks asked for, the caller's own only, each with the creations answer's fields", function()
    local a, b, theirs = submit(), submit(), submit(OTHER)
    local r = list("task_ids%5B%5D=" .. a .. "&task_ids%5B%5D=" .. b .. "&task_ids%5B%5D=" .. theirs
      .. "&task_ids%5B%5D=404404&pager.pagesz=10")
    assert.are.equal(200, r.status)
    assert.are.equal("", r.json.next_page_token)
    assert.are.equal(2, #r.json.tasks)
    for i, id in ipairs({ a, b }) do
      local e = r.json.tasks[i]
      assert.are.equal(id, e.id)
      assert.is_string(e.state)
      assert.are.equal("", e.err_code)
      assert.are.equal("viduq1", e.model)
      assert.is_number(e.credits)
      assert.is_table(e.creations)
    end
    -- Unbracketed keys too; a listed task counts as polled (3 polls: success).
    list("task_ids=" .. a)
    local e = list("task_ids[]=" .. a).json.tasks[1]
    assert.are.equal("success", e.state)
    assert.truthy(e.creations[1].url:find("/media/", 1, true))
    assert.are.equal(1080, e.creations[1].video.resolution.height)
  end)

  it("pages with pager.pagesz and pager.page_token, and filters by states[]", function()
    local ids = { submit(), submit(), submit() }
    local q = "task_ids[]=" .. table.concat(ids, "&task_ids[]=")
    local first = list(q .. "&pager.pagesz=2").json
    assert.are.equal(2, #first.tasks)
    assert.are_not.equal("", first.next_page_token)
    local second = list(q .. "&pager.pagesz=2&pager.page_token=" .. first.next_page_token).json
    assert.are.equal(1, #second.tasks)
    assert.are.equal(ids[3], second.tasks[1].id)
    assert.are.equal("", second.next_page_token)
    -- Without task_ids: every task of the key, newest first.
    local all = list("pager.pagesz=100").json.tasks
    assert.are.equal(ids[3], all[1].id)
    assert.are.equal(0, #list("states[]=success&" .. q).json.tasks)
    assert.are.equal(3, #list("states[]=queueing&states[]=processing&states[]=created&" .. q).json.tasks)
    -- Each task named and answered counts as a poll (pages 1 or 2, the filter just above,
    -- this one): the third makes a success.
    list(q)
    assert.are.equal(3, #list("states[]=success&" .. q).json.tasks)
  end)

  it("refuses a page size outside 1..100 and a bad token in Vidu's envelope", function()
    for _, row in ipairs({
      { "pager.pagesz=101", "PageSizeOutOfRange" }, { "pager.pagesz=0", "PageSizeOutOfRange" },
      { "pager.pagesz=x", "FieldInvalid" }, { "pager.page_token=zz", "FieldInvalid" },
    }) do
      local r = list(row[1])
      assert.are.equal(400, r.status, row[1])
      assert.are.equal(row[2], r.json.reason, row[1])
    end
    assert.are.equal(401, list("pager.pagesz=1", "").status)
  end)

  it("config vidu_tasks_list: \"no_state\" leaves state out, \"absent\" answers 404; the relay has none", function()
    local id = submit()
    emu:config{ vidu_tasks_list = "no_state" }
    local e = list("task_ids[]=" .. id).json.tasks[1]
    assert.are.equal(id, e.id)
    assert.is_nil(e.state)
    emu:config{ vidu_tasks_list = "absent" }
    assert.are.equal(404, list("task_ids[]=" .. id).status)
    local r = emu:call("GET", "/vidu/v2/tasks?task_ids[]=" .. id, { auth = "Bearer " .. KEY })
    assert.are.equal(404, r.status)
    local _, status = emu:control("POST", "/_emulator/config", { vidu_tasks_list = "maybe" })
    assert.are.equal(400, status)
  end)
end)

describe("batched polls", function()
  it("50 tasks waited together finish with far fewer status requests than one per poll", function()
    local N = 50
    local c = client_for()
    local tasks, errs = submit_and_wait(c, N)
    assert.are.same({}, errs)
    assert_all_right(tasks, N)
    local got = lists()
    -- Each task takes 3 polls on the emulator: one request per poll would be at least 3 * N.
    local polls = 0
    for _, r in ipairs(got) do
      local n = #ids_of(r)
      assert.is_true(n >= 1 and n <= 100)
      polls = polls + n
    end
    assert.is_true(polls >= 3 * N, "list entries " .. polls)
    assert.are.equal(0, #singles())
    -- The pace's scouts poll first (16 of the 50) and the rest once a scout finishes, each
    -- when it reaches the shortest duration seen, as far apart as the submits were: so the
    -- lists come in more rounds than one per poll of all 50 at once. 6-10 natively; under
    -- valgrind 8-9 alone and 17 within the whole suite, where the submits spread out; against
    -- at least 150 requests without batching.
    assert.is_true(#got * 2 <= N, #got .. " list requests for " .. N .. " tasks")
    print(string.format("\nbatched polls: %d tasks, %d list requests answering %d polls", N, #got, polls))
  end)

  it("sends at most 100 ids a request: 150 polls due at once make two requests", function()
    local c = client_for{ batch_window = 1 }
    local tasks = submit_and_wait(c, 150, { timeout = 60 })
    emu:control("DELETE", "/_emulator/log")
    local done = 0
    c.scheduler:run(function()
      for _, t in ipairs(tasks) do
        c.scheduler:spawn(function() assert(t:refresh()) done = done + 1 end)
      end
    end)
    assert.are.equal(150, done)
    local got = lists()
    assert.are.equal(2, #got)
    assert.are.equal(100, #ids_of(got[1]))
    assert.are.equal(50, #ids_of(got[2]))
    assert.are.equal(0, #singles())
  end)

  it("batch_polls = false polls each task on its own; a bad batch_window raises naming it", function()
    local c = client_for{ batch_polls = false }
    local tasks, errs = submit_and_wait(c, 5)
    assert.are.same({}, errs)
    assert_all_right(tasks, 5)
    assert.are.equal(0, #lists())
    assert.is_true(#singles() >= 15)
    local ok, err = pcall(client_for, { batch_window = 5 })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("batch_window", 1, true))
  end)

  it("a list that answers 404 turns batching off: every task finishes on its own polls", function()
    emu:config{ vidu_tasks_list = "absent" }
    local lines = {}
    local c = client_for{ log = function(_, line) lines[#lines + 1] = line end }
    local tasks, errs = submit_and_wait(c, 20)
    assert.are.same({}, errs)
    assert_all_right(tasks, 20)
    assert.is_true(#singles() >= 60)
    assert.truthy(table.concat(lines, "\n"):find("task list answered HTTP 404", 1, true))
    -- Off for good: polls after the first answer go on their own.
    local n = #lists()
    c.scheduler:run(function() assert(tasks[1]:refresh()) end)
    assert.are.equal(n, #lists())
  end)

  it("entries without a state are polled on their own, and batching is turned off", function()
    emu:config{ vidu_tasks_list = "no_state" }
    local c = client_for()
    local tasks, errs = submit_and_wait(c, 20)
    assert.are.same({}, errs)
    assert_all_right(tasks, 20)
    assert.is_true(#lists() >= 1)
    -- Every task was polled on its own (the list's looks counted as polls on the emulator).
    for _, t in ipairs(tasks) do
      assert.is_true(#emu:requests{ method = "GET", path = "/ent/v2/tasks/" .. t.id .. "/creations" } >= 1)
    end
  end)

  it("a task missing from the answer is polled on its own; batching goes on", function()
    emu:fault{ method = "GET", path = LIST, kind = "status", status = 200, times = 2,
      body = '{"tasks":[],"next_page_token":""}' }
    local c = client_for()
    local tasks, errs = submit_and_wait(c, 20)
    assert.are.same({}, errs)
    assert_all_right(tasks, 20)
    local got = lists()
    -- The first two answers were empty: their tasks went on their own GETs.
    assert.are.equal(#ids_of(got[1]) + #ids_of(got[2]), #singles())
    assert.is_true(#got > 2)
  end)

  it("follows next_page_token when the server answers a smaller page", function()
    -- The first answer is a page of someone else's task with a token to the page of ours.
    emu:fault{ method = "GET", path = LIST, kind = "status", status = 200, times = 1,
      body = '{"tasks":[{"id":"1","state":"success"}],"next_page_token":"o0"}' }
    local c = client_for()
    local tasks, errs = submit_and_wait(c, 10)
    assert.are.same({}, errs)
    assert_all_right(tasks, 10)
    local got = lists()
    assert.is_nil(got[1].query:find("page_token", 1, true))
    local follow
    for _, r in ipairs(got) do
      if r.query:find("pager.page_token=o0", 1, true) then follow = follow or r end
    end
    assert.is_table(follow)
    assert.are.same(ids_of(got[1]), ids_of(follow))
    assert.are.equal(0, #singles())
  end)

  it("an answer that is not the list turns batching off; the tasks finish", function()
    emu:fault{ method = "GET", path = LIST, kind = "status", status = 200, times = 1,
      body = "<html>gateway</html>", headers = { ["Content-Type"] = "text/html" } }
    local c = client_for()
    local tasks, errs = submit_and_wait(c, 10)
    assert.are.same({}, errs)
    assert_all_right(tasks, 10)
    assert.is_true(#singles() >= 30)
  end)

  it("a list that hangs does not hold a wait past its timeout", function()
    emu:reset{ progress = "polls", polls = 1000 }
    emu:fault{ method = "GET", path = LIST, kind = "hang", times = -1 }
    local c = client_for{ timeout = 20, retries = 1 }
    local sched = c.scheduler
    -- From the main thread: the hung list's coroutine is left to its own 20 s timeout.
    local task = assert(c:submit{ image = URL_IMAGE })
    local t0 = sched:time()
    local ok, err = task:wait{ timeout = 0.5 }
    local took = sched:time() - t0
    assert.is_nil(ok)
    assert.are.equal("timeout", err.kind)
    assert.are.equal(task.id, err.task_id)
    assert.are.equal(1, #lists())
    -- Bounded by the wait's timeout (plus its 1 s grace), not by the hung request's 20 s.
    assert.is_true(took < 10, took)
  end)
end)

describe("the relay", function()
  it("keeps one poll per task: no gateway documents the list", function()
    local c = vidu.client("relay", { api_key = KEY, base_url = emu.url, scheduler = scheduler.new(),
      poll = { first = 0.05, max = 0.2, factor = 1.5 } })
    local tasks, errs = {}, {}
    c.scheduler:run(function()
      for i = 1, 5 do
        c.scheduler:spawn(function()
          local t = assert(c:submit{ image = URL_IMAGE, prompt = "relay " .. i })
          tasks[#tasks + 1] = t
          local ok, err = t:wait{ timeout = 60 }
          if not ok then errs[#errs + 1] = err end
        end)
      end
    end)
    assert.are.same({}, errs)
    assert_all_right(tasks, 5)
    assert.are.equal(0, #emu:requests{ method = "GET", path = "/vidu/v2/tasks" })
    assert.is_true(#emu:requests{ method = "GET", match = "^/vidu/v2/tasks/[^/]+/creations$" } >= 15)
    local ok = pcall(vidu.client, "relay", { api_key = KEY, base_url = emu.url, batch_polls = true })
    assert.is_false(ok)
  end)
end)
