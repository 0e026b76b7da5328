-- bin/vidu end to end: a real child process per command against the emulator. generate (and
-- its journal: no second payment), --json, exit codes, resume after a timeout, cancel, batch
-- dry run, budget stop, "may exist" submits resolved by attach and forget, the report file.
-- luacheck: max line length 130
local json = require("vidu.json")
local journal = require("vidu.journal")
local emulator = require("support.emulator")
local util = require("support.util")

local LUA = os.getenv("VIDU_LUA") or "lua5.4"
local ROOT = journal.abspath(".")
local VIDU = ROOT .. "/bin/vidu"
local IMAGE = ROOT .. "/spec/fixtures/png_640x360.png"
local SECRET = "sk-cli-spec-must-never-be-printed-0123"
local SUBMIT = "/ent/v2/img2video"
local q = util.shell_quote

-- Runs bin/vidu with args (a list) in dir: exit code, stdout, stderr.
local function vidu(dir, args, env)
  local words = { "cd", q(dir), "&&", "env", "VIDU_API_KEY=" .. q(SECRET), "FAL_KEY=" .. q(SECRET),
    "WAVESPEED_API_KEY=" .. q(SECRET) }
  for k, v in pairs(env or {}) do words[#words + 1] = k .. "=" .. q(v) end
  words[#words + 1] = LUA
  words[#words + 1] = q(VIDU)
  for _, a in ipairs(args) do words[#words + 1] = q(a) end
  local errfile = os.tmpname()
  words[#words + 1] = "2>" .. q(errfile) .. "; echo \"EXIT:$?\""
  local p = assert(io.popen(table.concat(words, " ")))
  local out = p:read("*a")
  p:close()
  local err = util.read_file(errfile)
  os.remove(errfile)
  local code = tonumber(out:match("EXIT:(%d+)%s*$"))
  out = out:gsub("EXIT:%d+%s*$", "")
  assert.is_nil(out:find(SECRET, 1, true), "the key appeared on stdout")
  assert.is_nil(err:find(SECRET, 1, true), "the key appeared on stderr")
  return code, out, err
end

local function json_lines(out)
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = assert(json.decode(line), line) end
  return list
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. q(d)))
  return d
end

local function read_results(path)
  local list = {}
  for line in util.read_file(path):gmatch("[^\n]+") do list[#list + 1] = assert(json.decode(line)) end
  return list
end

describe("vidu --help and usage errors", function()
  it("prints each command's usage and exits 0", function()
    for _, cmd in ipairs({ "generate", "batch", "resume", "status", "cancel", "emulator", "report" }) do
      local code, out = vidu(ROOT, { cmd, "--help" })
      assert.are.equal(0, code, cmd)
      assert.are.equal("usage: vidu " .. cmd, out:sub(1, #("usage: vidu " .. cmd)), cmd)
    end
    local code, out = vidu(ROOT, { "--help" })
    assert.are.equal(0, code)
    assert.matches("exit codes: 0 done", out)
  end)

  -- { args, the stderr text }
  local rows = {
    { {}, nil },
    { { "frobnicate" }, 'unknown command "frobnicate"' },
    { { "generate", "--seed" }, "generate: --seed needs a value" },
    { { "generate", "a.png" }, "generate: generate needs IMAGE and PROMPT" },
    { { "generate", IMAGE, "p", "--seed", "x" }, 'generate: --seed needs a whole number >= 0, got "x"' },
    { { "generate", IMAGE, "p", "--motion", "wild" }, "generate: invalid: " },
    { { "batch" }, "batch: batch needs one PLAN file" },
    { { "batch", "/nonexistent/plan.json" }, "batch: plan: /nonexistent/plan.json: No such file" },
    { { "status", "--journal", "/nonexistent/j" }, "status: no journal at /nonexistent/j" },
    { { "report", "/nonexistent" }, "report: /nonexistent/results.jsonl: no such file" },
    { { "status", "--bogus" }, "status: unknown option --bogus" },
  }
  for i, row in ipairs(rows) do
    it("exits 2 on a usage error (" .. i .. ")", function()
      local code, out, err = vidu(ROOT, row[1], { VIDU_BASE_URL = "http://127.0.0.1:9" })
      assert.are.equal(2, code, out .. err)
      if row[2] then assert.are.equal("vidu: " .. row[2], err:sub(1, #row[2] + 6)) end
    end)
  end

  it("refuses a provider without a key, naming the variable and not the value", function()
    local code, _, err = vidu(ROOT, { "generate", IMAGE, "p", "--provider", "vtrix" })
    assert.are.equal(2, code)
    assert.matches("no API key for vtrix: set VTRIX_API_KEY", err)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
    util.write_file(dir .. "/p.json", json.encode{ providers = { "vidu", "vtrix" }, image = IMAGE, seeds = { 1, 2 } })
    code, _, err = vidu(dir, { "batch", "p.json" })
    assert.are.equal(2, code)
    assert.are.equal("vidu: batch: no API key for vtrix: set VTRIX_API_KEY (or --base-url to the emulator)\n", err)
    assert.is_nil(io.open(dir .. "/p-out/journal.jsonl"))
    os.execute("rm -rf " .. q(dir))
  end)
end)

describe("vidu emulator", function()
  it("starts the emulator, which answers and goes when vidu is stopped", function()
    local core = require("vidu.core")
    local child = util.start_server(table.concat({ LUA, q(VIDU), "emulator", "--port", "0", "--no-ffmpeg" }, " "),
      "vidu emulator")
    local engine = core.engine{}
    local item = util.fetch(engine, { method = "GET", url = child.url .. "/_emulator/health", timeout = 10 })
    assert.are.equal(200, item.status)
    assert.are.equal(true, json.decode(item.body).ok)
    child:stop()
    -- Its parent gone, the emulator stops by itself (it checks twice a second).
    local deadline, refused = core.now() + 10, false
    while core.now() < deadline and not refused do
      local r = util.fetch(engine, { method = "GET", url = child.url .. "/_emulator/health", timeout = 2,
        connect_timeout = 2 })
      refused = not r.ok
      if not refused then engine:wait(100) end
    end
    engine:close()
    assert.is_true(refused, "the emulator outlived vidu")
  end)
end)

describe("vidu against the emulator", function()
  local emu, dir

  setup(function() emu = emulator.start{ seed = 31 } end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function()
    emu:reset{ progress = "time", seconds = 0.3, outcome = "success" }
    dir = tmpdir()
  end)
  after_each(function() os.execute("rm -rf " .. q(dir)) end)

  local function run(args)
    local full = { args[1] }
    for i = 2, #args do full[#full + 1] = args[i] end
    if args[1] ~= "status" and args[1] ~= "report" then
      full[#full + 1] = "--poll"
      full[#full + 1] = "0.1,0.3"
    end
    return vidu(dir, full, { VIDU_BASE_URL = emu.url })
  end

  local function submits() return #emu:requests{ method = "POST", path = SUBMIT } end

  it("generate: one video, journaled; the same command again pays nothing", function()
    local code, out, err = run{ "generate", IMAGE, "A slow dolly in.", "--seed", "4", "--motion", "small", "--out", "a.mp4" }
    assert.are.equal(0, code, out .. err)
    assert.matches("submitted: vidu task %d+", out)
    assert.matches("saved a.mp4", out)
    assert.are.equal("ftyp", util.read_file(dir .. "/a.mp4"):sub(5, 8))
    assert.are.equal(1, submits())
    local body = json.decode(emu:requests{ method = "POST", path = SUBMIT }[1].body)
    assert.are.equal(4, body.seed)
    assert.are.equal("small", body.movement_amplitude)

    local recs = {}
    for line in util.read_file(dir .. "/.vidu/journal.jsonl"):gmatch("[^\n]+") do
      recs[#recs + 1] = json.decode(line).type
    end
    -- open, intent, submitted, a status per change (running may be seen or not), downloaded
    assert.are.same({ "open", "intent", "submitted" }, { recs[1], recs[2], recs[3] })
    assert.are.equal("downloaded", recs[#recs])
    for i = 4, #recs - 1 do assert.are.equal("status", recs[i]) end

    code, out = run{ "generate", IMAGE, "A slow dolly in.", "--seed", "4", "--motion", "small", "--out", "a.mp4" }
    assert.are.equal(0, code)
    assert.matches("already made: a.mp4", out)
    assert.are.equal(1, submits())
    -- The video gone: re-attached and downloaded again, still one task.
    os.remove(dir .. "/a.mp4")
    code, out = run{ "generate", IMAGE, "A slow dolly in.", "--seed", "4", "--motion", "small", "--out", "a.mp4" }
    assert.are.equal(0, code, out)
    assert.matches("re%-attaching vidu task", out)
    assert.are.equal(1, submits())
    assert.are.equal("ftyp", util.read_file(dir .. "/a.mp4"):sub(5, 8))
    -- --force pays again, on purpose.
    code = run{ "generate", IMAGE, "A slow dolly in.", "--seed", "4", "--motion", "small", "--out", "a.mp4", "--force" }
    assert.are.equal(0, code)
    assert.are.equal(2, submits())
  end)

  it("generate --json: one JSON object per event, ending with the summary", function()
    local code, out = run{ "generate", IMAGE, "json please", "--json", "--out", "j.mp4" }
    assert.are.equal(0, code)
    local list = json_lines(out)
    local types = {}
    for _, o in ipairs(list) do types[#types + 1] = o.type end
    assert.are.equal("submitting", types[1])
    assert.are.equal("submitted", types[2])
    assert.are.equal("summary", types[#types])
    assert.are.equal(0, list[#list].exit)
    assert.truthy(out:find('"type":"finished"', 1, true))
    assert.truthy(out:find('"type":"downloaded"', 1, true))
    assert.are.equal(list[2].id, list[#list].id)
  end)

  it("generate exits 1 when the generation fails, and status says so", function()
    emu:next{ outcome = "failed" }
    local code, _, err = run{ "generate", IMAGE, "will fail" }
    assert.are.equal(1, code)
    assert.matches("generation failed", err)
    local scode, sout = run{ "status" }
    assert.are.equal(1, scode)
    assert.matches("failed", sout)
  end)

  it("a wait that times out exits 5; resume later waits and downloads", function()
    emu:next{ seconds = 2.5 }
    local code, _, err = run{ "generate", IMAGE, "slow one", "--out", "slow.mp4", "--timeout", "0.4" }
    assert.are.equal(5, code, err)
    assert.matches("vidu resume", err)
    local scode, sout = run{ "status" }
    assert.are.equal(5, scode)
    assert.matches("queued", sout)
    local rcode, rout = run{ "resume" }
    assert.are.equal(0, rcode, rout)
    assert.matches("1 re%-attached, 1 downloaded", rout)
    assert.are.equal("ftyp", util.read_file(dir .. "/slow.mp4"):sub(5, 8))
    assert.are.equal(1, submits())
    scode = run{ "status" }
    assert.are.equal(0, scode)
  end)

  it("cancel --all cancels what the provider can and says which cannot", function()
    emu:next{ seconds = 30 }
    assert.are.equal(5, (run{ "generate", IMAGE, "long", "--timeout", "0.2" }))
    emu:next{ seconds = 30 }
    assert.are.equal(5, (run{ "generate", IMAGE, "long too", "--timeout", "0.2", "--provider", "wavespeed" }))
    local code, out = run{ "cancel", "--all" }
    assert.are.equal(1, code)
    assert.matches("vidu task %d+: cancel requested %(canceled%)", out)
    assert.matches("wavespeed task %S+: .*offers no way to cancel", out)
    local _, sout = run{ "status" }
    assert.matches("canceled", sout)
    assert.are.equal(1, #emu:requests{ method = "POST", match = "^/ent/v2/tasks/.*/cancel$" })
  end)

  local function write_plan(name, t)
    util.write_file(dir .. "/" .. name, json.encode(t))
    return name
  end

  it("batch --dry-run validates every item, sends nothing and prices the submits", function()
    local plan = write_plan("fal.json", { provider = "fal", image = IMAGE, prompts = { "a", "b" }, seeds = { 1, 2, 3 } })
    local code, out = run{ "batch", plan, "--dry-run" }
    assert.are.equal(0, code, out)
    assert.matches("6 items %(1 provider x 1 image x 2 prompt x 3 seed%)", out)
    assert.matches("to send: 6", out)
    assert.matches("estimated cost of the submits: %$2%.40", out)
    code, out = run{ "batch", plan, "--dry-run", "--json" }
    assert.are.equal(0, code)
    local o = json_lines(out)[1]
    assert.are.equal("dry_run", o.type)
    assert.are.equal(6, o.submit)
    assert.are.equal(2.4, o.estimate_usd)
    local bad = write_plan("bad.json", { provider = "vidu", image = IMAGE, prompts = { "fine", string.rep("x", 1600) } })
    code, out = run{ "batch", bad, "--dry-run" }
    assert.are.equal(2, code)
    assert.matches("invalid: #2 vidu .*prompt: 1600 characters, the limit is 1500", out)
    assert.matches("estimated cost of the submits: unknown", out)
    -- Without --dry-run: refused whole, nothing sent.
    local _, err
    code, _, err = run{ "batch", bad }
    assert.are.equal(2, code)
    assert.matches("1 of 2 items are invalid %(listed above%): nothing sent", err)
    assert.are.equal(0, #emu:requests{})
    assert.is_nil(io.open(dir .. "/fal-out/journal.jsonl"))
    assert.is_nil(io.open(dir .. "/bad-out/results.jsonl"))
  end)

  it("batch --budget: no submit past the cap; a re-run skips what the journal holds", function()
    local plan = write_plan("b.json", { provider = "vidu", image = IMAGE, prompt = "budget", seeds = { 1, 2, 3, 4, 5, 6 } })
    -- An unknown price with a budget is refused before anything is sent.
    local code, _, err = run{ "batch", plan, "--budget", "3.5" }
    assert.are.equal(2, code)
    assert.matches("%-%-budget: no documented price for vidu/viduq1", err)
    assert.are.equal(0, submits())

    code = run{ "batch", plan, "--budget", "3.5", "--price", "vidu/viduq1=1", "--out", "b", "--concurrency", "2" }
    assert.are.equal(3, code)
    assert.are.equal(3, submits())
    local results = read_results(dir .. "/b/results.jsonl")
    assert.are.equal(6, #results)
    local by = {}
    for _, r in ipairs(results) do by[r.status] = (by[r.status] or 0) + 1 end
    assert.are.same({ succeeded = 3, budget = 3 }, by)
    for i = 1, 3 do
      assert.are.equal(i, results[i].axes.seed)
      assert.are.equal("ftyp", util.read_file(dir .. "/b/" .. results[i].video):sub(5, 8))
    end
    assert.truthy(util.read_file(dir .. "/b/index.html"):find('id="media-status"', 1, true))

    -- A bigger budget: only the three not yet made are sent.
    local out
    code, out = run{ "batch", plan, "--budget", "6", "--price", "vidu/viduq1=1", "--out", "b", "--json" }
    assert.are.equal(0, code)
    assert.are.equal(6, submits())
    local list = json_lines(out)
    assert.are.equal("start", list[1].type)
    assert.are.equal(3, list[1].submit)
    assert.are.equal(3, list[1].done)
    local summary = list[#list]
    assert.are.equal("summary", summary.type)
    assert.are.equal(6, summary.counts.succeeded)
    assert.are.equal(6, summary.spent_usd)
    -- And once more: nothing to send.
    code = run{ "batch", plan, "--out", "b" }
    assert.are.equal(0, code)
    assert.are.equal(6, submits())
  end)

  it("a batch submit cut after sending is listed as may exist, never re-sent; attach or forget resolves it", function()
    local plan = write_plan("m.json", { provider = "vidu", image = IMAGE, prompts = { "cut after", "cut before", "fine" } })
    emu:fault{ method = "POST", path = SUBMIT, kind = "reset_after", times = 1 }
    emu:fault{ method = "POST", path = SUBMIT, kind = "reset_before", times = 1 }
    local code, out = run{ "batch", plan, "--out", "m", "--concurrency", "1" }
    assert.are.equal(4, code, out)
    assert.matches("may exist %(never sent again", out)
    local results = read_results(dir .. "/m/results.jsonl")
    assert.are.equal("may_exist", results[1].status)
    assert.are.equal("may_exist", results[2].status)
    assert.are.equal("succeeded", results[3].status)
    assert.are.equal(3, submits())

    -- Still listed, still not sent, on a re-run, by status and by resume.
    code = run{ "batch", plan, "--out", "m" }
    assert.are.equal(4, code)
    local scode, sout = run{ "status", "--journal", "m/journal.jsonl" }
    assert.are.equal(4, scode)
    assert.matches("may exist", sout)
    code = run{ "resume", "--journal", "m/journal.jsonl" }
    assert.are.equal(4, code)
    assert.are.equal(3, submits())

    -- The user looks at the provider: "cut after" made a task, "cut before" did not.
    local made
    for _, t in ipairs(emu:control("GET", "/_emulator/tasks").tasks) do
      if t.input.prompt == "cut after" then made = t.id end
    end
    assert.truthy(made)
    code, out = run{ "resume", "--journal", "m/journal.jsonl", "--attach", results[1].key:sub(1, 8) .. "=" .. made,
      "--forget", results[2].key }
    assert.are.equal(0, code, out)
    assert.matches("1 re%-attached, 1 downloaded", out)
    results = read_results(dir .. "/m/results.jsonl")
    assert.are.equal("succeeded", results[1].status)
    assert.are.equal(made, results[1].task_id)
    assert.are.equal("pending", results[2].status)
    -- The forgotten one is sent by the next run, once.
    code = run{ "batch", plan, "--out", "m" }
    assert.are.equal(0, code)
    assert.are.equal(4, submits())
    local prompts = {}
    for _, t in ipairs(emu:control("GET", "/_emulator/tasks").tasks) do
      prompts[t.input.prompt] = (prompts[t.input.prompt] or 0) + 1
    end
    assert.are.same({ ["cut after"] = 1, ["cut before"] = 1, fine = 1 }, prompts)
    -- The report shows every item's video.
    local html = util.read_file(dir .. "/m/index.html")
    local n = select(2, html:gsub("<video ", ""))
    assert.are.equal(3, n)
  end)

  it("report: a failed item is shown with its error", function()
    local plan = write_plan("r.json", { provider = "vidu", image = IMAGE, prompt = "report", seeds = { 1, 2 } })
    emu:next{ outcome = "failed" }
    local code = run{ "batch", plan, "--out", "r", "--concurrency", "1" }
    assert.are.equal(1, code)
    os.remove(dir .. "/r/index.html")
    local rcode, rout = run{ "report", "r" }
    assert.are.equal(0, rcode)
    assert.matches("r/index.html: 2 items, 1 videos", rout)
    local html = util.read_file(dir .. "/r/index.html")
    assert.truthy(html:find('data-status="failed"', 1, true))
    assert.truthy(html:find("failed: generation failed", 1, true))
    assert.truthy(html:find('<select name="seed">', 1, true))
    assert.is_nil(html:find("://", 1, true)) -- nothing to fetch from a network
  end)
end)
