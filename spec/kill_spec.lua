-- kill -9 at random moments: a real `bin/vidu batch` child (50 items against the emulator,
-- tasks of 1.5 s, half the submits held 0.3 s on the server) is killed with SIGKILL at seeded
-- random times, then run again until the batch is complete. A submit whose answer the kill
-- cut off is "may exist": the spec, as a user would, looks for it at the provider (the
-- emulator's task list) and attaches or forgets it. In the end the tasks on the emulator are
-- exactly the journal's, each item was submitted once, and every video is in place.
-- luacheck: max line length 130
local json = require("vidu.json")
local journal = require("vidu.journal")
local emulator = require("support.emulator")
local util = require("support.util")

local LUA = os.getenv("VIDU_LUA") or "lua5.4"
local ROOT = journal.abspath(".")
local q = util.shell_quote
local SEED = tonumber(os.getenv("VIDU_KILL_SEED") or "") or 20261202
local KILLS = tonumber(os.getenv("VIDU_KILLS") or "") or 6

-- Starts `bin/vidu ARGS --json` under `timeout -s KILL`, which SIGKILLs it after `after`
-- seconds; reads its output to the end. Returns the JSON objects it printed and whether it
-- finished by itself (its summary line is there).
local function run_batch(dir, args, after, base_url)
  local words = { "env", "-C", q(dir), "VIDU_BASE_URL=" .. q(base_url),
    "timeout", "-s", "KILL", string.format("%.3f", after), LUA, q(ROOT .. "/bin/vidu") }
  for _, a in ipairs(args) do words[#words + 1] = q(a) end
  words[#words + 1] = "2>/dev/null"
  local child = util.spawn(table.concat(words, " "), "^{")
  local objs = { assert(json.decode(child.line)) }
  while true do
    local line = child.pipe:read("*l")
    if not line then break end
    -- A line cut by the kill is not JSON: it is the last one anyway.
    local o = json.decode(line)
    if o then objs[#objs + 1] = o end
  end
  child.pipe:close()
  child.pipe = nil
  local last = objs[#objs]
  return objs, last and last.type == "summary" and last or nil
end

describe("kill -9 during a batch", function()
  local emu, dir

  setup(function()
    emu = emulator.start{ seed = 41, args = { "--no-ffmpeg" } }
    emu:reset{ progress = "time", seconds = 1.5, outcome = "success" }
    -- Half the submits take 0.3 s on the server before the task exists: a kill in that window
    -- leaves a submit that may exist, the case the journal must never send twice.
    emu:fault{ method = "POST", path = "/ent/v2/img2video", kind = "latency", latency_ms = 300,
      probability = 0.5, seed = 7 }
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
  end)
  teardown(function()
    if emu then emu:stop() end
    os.execute("rm -rf " .. q(dir))
  end)

  it("loses no task, submits nothing twice, and completes by resuming", function()
    local prompts = {}
    for i = 1, 5 do prompts[i] = "Shot " .. i .. ": the camera drifts slowly to the left." end
    local seeds = {}
    for i = 1, 10 do seeds[i] = i end
    util.write_file(dir .. "/plan.json", json.encode{ provider = "vidu", image = ROOT .. "/spec/fixtures/png_640x360.png",
      prompts = prompts, seeds = seeds, motion = "small" })
    local args = { "batch", "plan.json", "--out", "out", "--concurrency", "10", "--poll", "1,2", "--json" }

    math.randomseed(SEED)
    local started = os.time()
    local runs, kills, resolved_attach, resolved_forget, finished = 0, 0, 0, 0, nil
    local kill_times = {}
    while not finished do
      runs = runs + 1
      assert.is_true(runs <= 20, "the batch did not complete in 20 runs")
      local after = 60
      if kills < KILLS then
        after = 0.2 + math.random() * 2.8
        kill_times[#kill_times + 1] = string.format("%.2f", after)
      end
      local _, summary = run_batch(dir, args, after, emu.url)
      if not summary then
        kills = kills + 1
      elseif summary.exit == 4 then
        -- Submits cut between their intent and their answer: look for each on the emulator
        -- (by its prompt and seed) and attach it, or forget it when nothing was made.
        local j = journal.open(dir .. "/out/journal.jsonl", { readonly = true })
        local tasks = emu:control("GET", "/_emulator/tasks").tasks
        local resume = { "resume", "--journal", "out/journal.jsonl", "--json" }
        for _, e in ipairs(j:entries()) do
          if e.state == "may_exist" then
            local found
            for _, t in ipairs(tasks) do
              if t.input.prompt == e.params.prompt and t.input.seed == e.params.seed then
                assert.is_nil(found, "two tasks for one item")
                found = t.id
              end
            end
            if found then
              resume[#resume + 1] = "--attach"
              resume[#resume + 1] = e.key .. "=" .. found
              resolved_attach = resolved_attach + 1
            else
              resume[#resume + 1] = "--forget"
              resume[#resume + 1] = e.key
              resolved_forget = resolved_forget + 1
            end
          end
        end
        run_batch(dir, resume, 60, emu.url)
      else
        assert.are.equal(0, summary.exit)
        finished = summary
      end
    end
    -- A run may finish before its kill time: then fewer kills were needed.
    assert.is_true(kills >= 1)
    assert.are.equal(50, finished.counts.succeeded)

    -- Every item once on the emulator, and the journal knows every task there.
    local tasks = emu:control("GET", "/_emulator/tasks").tasks
    local per_item = {}
    for _, t in ipairs(tasks) do
      local k = t.input.prompt .. "\0" .. t.input.seed
      per_item[k] = (per_item[k] or 0) + 1
      assert.are.equal(1, per_item[k], "double submit of " .. t.input.prompt .. " seed " .. t.input.seed)
    end
    assert.are.equal(50, #tasks)
    assert.are.equal(50, #emu:requests{ method = "POST", path = "/ent/v2/img2video" })
    local j = journal.open(dir .. "/out/journal.jsonl", { readonly = true })
    local journal_ids = {}
    local n = 0
    for _, e in ipairs(j:entries()) do
      assert.are.equal("succeeded", e.state)
      journal_ids[e.id] = true
      n = n + 1
    end
    assert.are.equal(50, n)
    for _, t in ipairs(tasks) do assert.is_true(journal_ids[t.id], "task " .. t.id .. " is not in the journal") end
    assert.are.same({}, j.problems)

    -- Every video in place, no temporary file left, results in plan order.
    local p = io.popen("ls " .. q(dir .. "/out/videos"))
    local files, parts = 0, 0
    for name in p:lines() do
      if name:match("%.mp4$") then files = files + 1 end
      if name:match("%.part%-") then parts = parts + 1 end
    end
    p:close()
    assert.are.equal(50, files)
    assert.are.equal(0, parts)
    local lines = 0
    for line in util.read_file(dir .. "/out/results.jsonl"):gmatch("[^\n]+") do
      lines = lines + 1
      local r = json.decode(line)
      assert.are.equal(lines, r.index)
      assert.are.equal("succeeded", r.status)
    end
    assert.are.equal(50, lines)
    local opens = 0
    for line in util.read_file(dir .. "/out/journal.jsonl"):gmatch("[^\n]+") do
      if json.decode(line).type == "open" then opens = opens + 1 end
    end
    -- Figures for the report (not assertions).
    print(string.format("\nkill -9 spec: %d runs, %d kills (kill times drawn: %s s), %d may-exist attached, " ..
      "%d forgotten, %d journal opens, " ..
      "%d s in all", runs, kills, table.concat(kill_times, "/"), resolved_attach, resolved_forget, opens, os.time() - started))
  end)
end)
