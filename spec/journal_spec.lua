-- vidu.journal: records written through a real client's events against the emulator, keys,
-- luacheck: max line length 130
-- torn lines, "may exist" submits, and resume in a fresh process after a crash.
local vidu = require("vidu")
local json = require("vidu.json")
local journal = require("vidu.journal")
local emulator = require("support.emulator")
local util = require("support.util")

local KEY = "sk-journal-spec-0123456789abcdef"
local IMAGE = "spec/fixtures/png_640x360.png"
local PROMPT = "The astronaut waved and the camera moved up."

local function records(path)
  local out = {}
  for line in util.read_file(path):gmatch("[^\n]+") do
    out[#out + 1] = assert(json.decode(line))
  end
  return out
end

local function types_of(recs)
  local t = {}
  for i, r in ipairs(recs) do t[i] = r.type end
  return t
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. util.shell_quote(d)))
  return d
end

describe("journal.key", function()
  local c = vidu.client("vidu", { api_key = KEY, base_url = "http://127.0.0.1:9" })

  it("is the same for the same provider and normalised parameters", function()
    local a = assert(c:check{ image = IMAGE, prompt = PROMPT, seed = 3 })
    local b = assert(c:check{ seed = 3, prompt = PROMPT, image = "./" .. IMAGE, model = "viduq1",
      callback_url = "https://hooks.example/x", upload = false })
    assert.are.equal(journal.key("vidu", a), journal.key("vidu", b))
    assert.are.equal(journal.key("vidu", a),
      journal.key("vidu", assert(c:check{ image = journal.abspath(IMAGE), prompt = PROMPT, seed = 3 })))
  end)

  it("differs when the provider, a parameter or the image differs", function()
    local base = journal.key("vidu", assert(c:check{ image = IMAGE, prompt = PROMPT, seed = 3 }))
    local others = {
      journal.key("relay", assert(c:check{ image = IMAGE, prompt = PROMPT, seed = 3 })),
      journal.key("vidu", assert(c:check{ image = IMAGE, prompt = PROMPT, seed = 4 })),
      journal.key("vidu", assert(c:check{ image = IMAGE, prompt = PROMPT .. ".", seed = 3 })),
      journal.key("vidu", assert(c:check{ image = "spec/fixtures/jpeg_640x360.jpg", prompt = PROMPT, seed = 3 })),
      journal.key("vidu", assert(c:check{ image = IMAGE, prompt = PROMPT, seed = 3, movement_amplitude = "small" })),
    }
    local seen = { [base] = true }
    for _, k in ipairs(others) do
      assert.is_nil(seen[k])
      seen[k] = true
    end
  end)

  it("is pinned: a journal written by an older version still matches", function()
    local p = assert(c:check{ image = "https://example.com/in.png", prompt = "pinned", seed = 1 })
    assert.are.equal("139c46b5ddfca9ed", journal.key("vidu", p))
    assert.are.match("^%x+$", journal.key("vidu", p))
  end)

  it("describes an image given as bytes by a hash, never the bytes", function()
    local bytes = util.read_file(IMAGE)
    local p = assert(c:check{ image = { data = bytes }, prompt = PROMPT })
    local d = journal.describe_params(p)
    assert.is_nil(d.image.bytes)
    assert.are.match("^%x+$", d.image.bytes_hash)
    assert.is_true(#json.encode(d) < 500)
  end)
end)

describe("vidu.journal against the emulator", function()
  local emu, dir

  setup(function()
    emu = emulator.start{ seed = 21 }
  end)
  teardown(function()
    if emu then emu:stop() end
  end)
  before_each(function()
    emu:reset{ progress = "polls", polls = 2, outcome = "success" }
    dir = tmpdir()
  end)
  after_each(function()
    os.execute("rm -rf " .. util.shell_quote(dir))
  end)

  local function client(opts)
    local o = { api_key = KEY, base_url = emu.url, poll = { first = 0.02, max = 0.1, factor = 1.5 },
      retry = { base = 0.02, cap = 0.2 } }
    for k, v in pairs(opts or {}) do o[k] = v end
    return vidu.client("vidu", o)
  end

  it("records intent, handle, status changes and the download, in that order", function()
    local path = dir .. "/j.jsonl"
    local j = assert(journal.open(path))
    local c = client()
    local out = dir .. "/a.mp4"
    local task = assert(c:submit({ image = IMAGE, prompt = PROMPT, seed = 9 },
      { on_event = j:hook({ out = out, label = "first" }) }))
    assert.is_true((task:wait{ timeout = 30 }))
    assert.is_true((task:download(out)))

    local recs = records(path)
    assert.are.same({ "open", "intent", "submitted", "status", "status", "downloaded" }, types_of(recs))
    local intent = recs[2]
    assert.are.equal("vidu", intent.provider)
    assert.are.equal(PROMPT, intent.params.prompt)
    assert.are.equal(9, intent.params.seed)
    assert.are.equal("viduq1", intent.params.model)
    assert.are.equal(journal.abspath(IMAGE), intent.params.image.path)
    assert.is_nil(intent.params.image.data_uri)
    assert.are.same({ out = out, label = "first" }, intent.meta)
    assert.are.equal(task.id, recs[3].handle.id)
    assert.are.equal("vidu", recs[3].handle.provider)
    assert.are.equal("running", recs[4].status)
    assert.are.equal("succeeded", recs[5].status)
    assert.are.equal(task.video_url, recs[5].video_url)
    assert.are.equal(out, recs[6].path)
    for i = 2, #recs do assert.are.equal(intent.key, recs[i].key) end
    for _, r in ipairs(recs) do assert.is_number(r.at) end
    -- The key never appears in the file.
    assert.is_nil(util.read_file(path):find(KEY, 1, true))

    local e = j:entry(intent.key)
    assert.are.equal("succeeded", e.state)
    assert.are.equal(out, e.path)
    assert.is_true(j:holds(intent.key))
    assert.are.equal(e, j:find_task("vidu", task.id))
    -- The intent was on disk before the paid request: one submit, one intent.
    assert.are.equal(1, #emu:requests{ method = "POST", path = "/ent/v2/img2video" })
  end)

  it("as a client's journal option follows every task and still calls the client's own hook", function()
    local path = dir .. "/c.jsonl"
    local seen = {}
    local c = client({ journal = path, on_event = function(ev) seen[#seen + 1] = ev.type end })
    local t1 = assert(c:submit{ image = IMAGE, prompt = PROMPT, seed = 1 })
    local t2 = assert(c:submit{ image = IMAGE, prompt = PROMPT, seed = 2 })
    vidu.gather({ t1, t2 }, { timeout = 30 })
    local j = assert(journal.open(path)) -- the same object, shared
    local entries = j:entries()
    assert.are.equal(2, #entries)
    assert.are.equal(t1.id, entries[1].id)
    assert.are.equal(t2.id, entries[2].id)
    assert.are.equal("succeeded", entries[1].state)
    assert.are.equal("succeeded", entries[2].state)
    assert.are.equal("submitting", seen[1])
    assert.has_error(function() vidu.client("vidu", { api_key = KEY, journal = 42 }) end)
  end)

  it("records a refused submit as rejected and a cut one as may exist", function()
    local path = dir .. "/e.jsonl"
    local j = assert(journal.open(path))
    local c = client()
    emu:fault{ method = "POST", path = "/ent/v2/img2video", kind = "status", status = 400, times = 1,
      body = '{"code":400,"reason":"BadRequest","message":"no"}' }
    local none, err = c:submit({ image = IMAGE, prompt = "refused" }, { on_event = j:hook({}) })
    assert.is_nil(none)
    assert.is_falsy(err.may_exist)
    emu:fault{ method = "POST", path = "/ent/v2/img2video", kind = "reset_after", times = 1 }
    none, err = c:submit({ image = IMAGE, prompt = "cut" }, { on_event = j:hook({}) })
    assert.is_nil(none)
    assert.is_true(err.may_exist)

    local entries = j:entries()
    assert.are.equal("rejected", entries[1].state)
    assert.is_false(j:holds(entries[1].key))
    assert.are.equal("may_exist", entries[2].state)
    assert.is_true(j:holds(entries[2].key))
    assert.are.equal("cut", entries[2].params.prompt)
    -- The emulator made the cut task: resume lists it and sends nothing.
    local before = #emu:requests{}
    local summary = j:resume{ client = function() return c end }
    assert.are.equal(1, #summary.may_exist)
    assert.are.equal(entries[2], summary.may_exist[1])
    assert.are.equal(before, #emu:requests{})
    -- The user found the task: adopting it makes resume attach and download it.
    local tasks = emu:control("GET", "/_emulator/tasks").tasks
    assert.are.equal(1, #tasks)
    assert(j:adopt(entries[2].key, tasks[1].id))
    entries[2].meta = { out = dir .. "/adopted.mp4" }
    summary = j:resume{ client = function() return c end }
    assert.are.equal(0, #summary.may_exist)
    assert.are.equal(1, summary.downloaded)
    assert.are.equal("ftyp", util.read_file(dir .. "/adopted.mp4"):sub(5, 8))
    -- forget: the refused one is already sendable; a may-exist one becomes so.
    assert(j:forget(entries[1].key))
    assert.are.equal("rejected", entries[1].state)
  end)

  it("loads past a torn last line, reports it, and starts the next record on a new line", function()
    local path = dir .. "/t.jsonl"
    do
      local j = assert(journal.open(path))
      local c = client()
      local task = assert(c:submit({ image = IMAGE, prompt = PROMPT }, { on_event = j:hook({}) }))
      assert.is_true((task:wait{ timeout = 30 }))
    end
    local f = assert(io.open(path, "ab"))
    f:write('{"type":"status","key":"abc","sta') -- a crash in the middle of a write
    f:close()
    local lines_before = select(2, util.read_file(path):gsub("\n", ""))

    local script = table.concat({
      "local journal = require('vidu.journal')",
      "local json = require('vidu.json')",
      "local j = assert(journal.open(arg[1]))",
      "local e = j:entries()[1]",
      "io.write(json.encode({ problems = j.problems, state = e.state, n = #j:entries() }))",
    }, "\n")
    local sp = util.write_tmp(script)
    local lua = os.getenv("VIDU_LUA") or "lua5.4"
    local function run()
      local p = assert(io.popen(lua .. " " .. util.shell_quote(sp) .. " " .. util.shell_quote(path) .. " 2>&1"))
      local got = p:read("*a")
      p:close()
      return assert(json.decode(got), got)
    end
    local first = run()
    assert.are.equal(1, #first.problems)
    assert.are.equal("torn", first.problems[1].reason)
    assert.are.equal(lines_before + 1, first.problems[1].line)
    assert.are.equal("succeeded", first.state)
    assert.are.equal(1, first.n)
    -- The child's open record began on a fresh line: the fragment is now a corrupt line in the
    -- middle, and every record after it loads.
    local second = run()
    os.remove(sp)
    assert.are.equal(1, #second.problems)
    assert.are.equal("corrupt", second.problems[1].reason)
    assert.are.equal("succeeded", second.state)
    local opens = 0
    for line in util.read_file(path):gmatch("[^\n]+") do
      local rec = json.decode(line)
      if rec and rec.type == "open" then opens = opens + 1 end
    end
    assert.are.equal(3, opens)
  end)

  it("resume in a fresh process re-attaches what a killed process submitted and downloads it", function()
    emu:reset{ progress = "polls", polls = 3, outcome = "success" }
    local path = dir .. "/r.jsonl"
    -- A child submits three tasks through its journal and dies at once (os.exit, no wait).
    local script = table.concat({
      "local vidu = require('vidu')",
      "local journal = require('vidu.journal')",
      "local j = assert(journal.open(arg[1]))",
      "local c = vidu.client('vidu', { api_key = arg[2], base_url = arg[3] })",
      "for i = 1, 3 do",
      "  assert(c:submit({ image = arg[4], prompt = 'p' .. i, seed = i },",
      "    { on_event = j:hook({ out = arg[5] .. '/v' .. i .. '.mp4' }) }))",
      "end",
      "os.exit(9)",
    }, "\n")
    local sp = util.write_tmp(script)
    local lua = os.getenv("VIDU_LUA") or "lua5.4"
    os.execute(table.concat({ lua, util.shell_quote(sp), util.shell_quote(path), util.shell_quote(KEY),
      util.shell_quote(emu.url), util.shell_quote(IMAGE), util.shell_quote(dir) }, " "))
    os.remove(sp)

    local j = assert(journal.open(path))
    local entries = j:entries()
    assert.are.equal(3, #entries)
    for _, e in ipairs(entries) do assert.are.equal("queued", e.state) end
    local c = client()
    local summary = j:resume{ client = function(p) assert.are.equal("vidu", p) return c end, timeout = 30 }
    assert.are.equal(3, summary.attached)
    assert.are.equal(3, summary.downloaded)
    assert.are.equal(0, #summary.may_exist)
    assert.are.equal(0, #summary.errors)
    for i = 1, 3 do assert.are.equal("ftyp", util.read_file(dir .. "/v" .. i .. ".mp4"):sub(5, 8)) end
    -- Tasks on the emulator are the journal's tasks, each submitted once.
    local ids = {}
    for _, t in ipairs(emu:control("GET", "/_emulator/tasks").tasks) do ids[t.id] = true end
    local n = 0
    for _, e in ipairs(j:entries()) do
      assert.is_true(ids[e.id])
      assert.are.equal(e.path, dir .. "/v" .. e.params.seed .. ".mp4")
      n = n + 1
    end
    assert.are.equal(3, n)
    assert.are.equal(3, #emu:requests{ method = "POST", path = "/ent/v2/img2video" })
    -- A second resume finds nothing to do.
    local again = j:resume{ client = function() return c end }
    assert.are.equal(0, again.attached)
  end)

  it("refuses to open a journal it cannot write", function()
    local none, err = journal.open(dir .. "/missing/dir/j.jsonl")
    assert.is_nil(none)
    assert.matches("vidu.journal: append_sync: .*No such file or directory", err)
  end)
end)
