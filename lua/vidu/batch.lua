--- vidu.batch: runs a plan (vidu.plan) through clients and a journal (vidu.journal).
--
--   local prep = batch.prepare(plan, { dir = "out", journal = j, client = client_for })
--   -- prep.items: each with its key, checked params, price and what to do with it
--   local state = batch.run(prep, { concurrency = 5, budget = 10 })
--   batch.write_results(prep)    -- DIR/results.jsonl in plan order
--
-- What the journal already holds is not sent again: an unfinished task is re-attached, a
-- finished one downloaded if its video is missing, a submit whose answer was lost stays
-- "may exist" until the user says otherwise. Items run concurrently, at most `concurrency`
-- tasks in flight per provider, and none is submitted that would take the committed cost
-- past the budget.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local files = require("vidu.files")
local shell_quote, file_exists = files.shell_quote, files.exists
local journal_mod = require("vidu.journal")
local json = require("vidu.json")
local plan_mod = require("vidu.plan")
local prices = require("vidu.prices")

local batch = {}

batch.DEFAULT_CONCURRENCY = 5

local TERMINAL = { succeeded = true, failed = true, canceled = true }

-- What a previous run left for an item: the action now, and the item's status so far.
local function classify(item, entry)
  if not entry or entry.state == "rejected" then return "submit", "pending" end
  local s = entry.state
  if s == "may_exist" then return "may_exist", "may_exist" end
  if s == "queued" or s == "running" then return "attach", s end
  if s == "succeeded" then
    if file_exists(item.out) then return "done", "succeeded" end
    return "download", "succeeded"
  end
  return "done", s
end

--- Expands and checks a plan without sending anything: every item validated (client:check),
-- keyed, priced, and matched against the journal. Returns prep = { plan, dir, journal,
-- items, counts = { items, submit, attach, download, done, may_exist, invalid, duplicate },
-- estimate = { usd (of the submits to come), unknown (how many have no price) },
-- committed (USD already committed by the journal's work for this plan) }.
-- opts: dir (output directory), journal (a vidu.journal), client = function(provider) ->
-- client, prices (overrides: { ["provider/model"] = USD, provider = USD, ["*"] = USD }).
function batch.prepare(p, opts)
  local j, dir = opts.journal, opts.dir
  local items = plan_mod.expand(p)
  local by_key = {}
  local counts = { items = #items, submit = 0, attach = 0, download = 0, done = 0, may_exist = 0,
    invalid = 0, duplicate = 0 }
  local est = { usd = 0, unknown = 0 }
  local committed = 0
  for _, item in ipairs(items) do
    local ok, client = pcall(opts.client, item.provider)
    local checked, err
    if ok then
      ok, checked, err = pcall(client.check, client, item.params)
      if not ok then checked, err = nil, checked end -- a raise: an unknown name, a wrong type
    else
      err = client
    end
    if not checked then
      item.action, item.status = "invalid", "invalid"
      item.error = type(err) == "table" and tostring(err.message or err) or tostring(err)
      item.error = item.error:gsub("^vidu[^:]*: ", "")
    else
      item.checked = checked
      item.key = journal_mod.key(item.provider, checked)
      item.file = "videos/" .. item.key .. ".mp4"
      item.out = dir .. "/" .. item.file
      item.usd, item.price_note = prices.estimate(item.provider, checked, opts.prices)
      if by_key[item.key] then
        item.action, item.status = "duplicate", "duplicate"
        item.duplicate_of = by_key[item.key].index
      else
        by_key[item.key] = item
        local entry = j and j:entry(item.key)
        item.entry = entry
        item.action, item.status = classify(item, entry)
        if entry and item.action ~= "submit" then
          item.task_id = entry.id
          committed = committed + (prices.reported_usd(item.provider, entry.cost) or item.usd or 0)
        end
      end
    end
    counts[item.action] = counts[item.action] + 1
    if item.action == "submit" then
      if item.usd then est.usd = est.usd + item.usd else est.unknown = est.unknown + 1 end
    end
  end
  return { plan = p, dir = dir, journal = j, items = items, counts = counts, estimate = est,
    committed = committed, client = opts.client, by_key = by_key }
end

--- The record of one item for DIR/results.jsonl and the contact sheet.
function batch.result(item)
  local axes = {}
  for k, v in pairs(item.axes) do axes[k] = v end
  local r = {
    index = item.index, key = item.key, provider = item.provider, axes = axes,
    status = item.status, task_id = item.task_id, error = item.error,
    duplicate_of = item.duplicate_of,
  }
  if item.checked then r.params = journal_mod.describe_params(item.checked) end
  local e = item.key and item.entry
  if e then
    r.cost = e.cost
    if not r.error and e.error then r.error = e.error.message end
  end
  if item.cost ~= nil then r.cost = item.cost end
  if item.status == "succeeded" and item.out and file_exists(item.out) then r.video = item.file end
  return r
end

local function append_line(path, tbl)
  local f = io.open(path, "ab")
  if not f then return end
  f:write(json.encode(tbl), "\n")
  f:close()
end

--- Rewrites DIR/results.jsonl with every item of the plan, in order (written through a
-- temporary file and renamed, so a reader never sees half of it), and DIR/plan.json.
function batch.write_results(prep)
  local dir = prep.dir
  local lines = {}
  for i, item in ipairs(prep.items) do
    if item.entry == nil and item.key and prep.journal then item.entry = prep.journal:entry(item.key) end
    lines[i] = json.encode(batch.result(item))
  end
  local tmp = dir .. "/results.jsonl.tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  f:write(table.concat(lines, "\n"), #lines > 0 and "\n" or "")
  f:close()
  local ok, rerr = os.rename(tmp, dir .. "/results.jsonl")
  if not ok then return nil, rerr end
  return batch.write_plan(prep)
end

--- Writes DIR/plan.json (the plan's axes and layout, for the contact sheet).
function batch.write_plan(prep)
  local f, err = io.open(prep.dir .. "/plan.json", "wb")
  if not f then return nil, err end
  f:write(json.encode(plan_mod.to_json(prep.plan)), "\n")
  f:close()
  return true
end

--- Creates DIR/videos and removes what a killed download left there (videos/*.part-*).
function batch.prepare_dir(dir)
  os.execute("mkdir -p " .. shell_quote(dir .. "/videos"))
  local p = io.popen("find " .. shell_quote(dir .. "/videos") ..
    " -maxdepth 1 -type f -name '*.mp4.part-*' 2>/dev/null")
  if p then
    for line in p:lines() do os.remove(line) end
    p:close()
  end
  local f = io.open(dir .. "/videos/.probe", "wb")
  if not f then return nil, "cannot write in " .. dir .. "/videos" end
  f:close()
  os.remove(dir .. "/videos/.probe")
  return true
end

--- Runs what prepare decided, concurrently: submits, re-attaches, downloads. Returns state =
-- { committed, spent (USD), credits, started, budget_stopped, counts by final status }.
-- opts: concurrency (per provider, default 5), budget (USD; every price must be known),
-- timeout (per task wait, s), rate (submits per minute per provider), on_event = function(ev)
-- (every client event with ev.item added, and { type = "item", item } when an item ends).
-- Works inside vidu.run and outside it (then it blocks until done).
function batch.run(prep, opts)
  opts = opts or {}
  local vidu = require("vidu")
  local sched = vidu.scheduler()
  local j = prep.journal
  local concurrency = opts.concurrency or batch.DEFAULT_CONCURRENCY
  local budget = opts.budget
  local state = { committed = prep.committed, spent = 0, credits = 0, budget = budget,
    started = sched:time(), finished = {}, in_flight = 0 }
  prep.state = state
  local sems, last_submit = {}, {}
  local results_path = prep.dir .. "/results.jsonl"
  local on_event = opts.on_event

  for _, item in ipairs(prep.items) do
    if item.action == "done" and item.entry then
      local e = item.entry
      local usd = prices.reported_usd(item.provider, e.cost) or item.usd or 0
      state.spent = state.spent + usd
      if type(e.cost) == "number" and not prices.reported_usd(item.provider, e.cost) then
        state.credits = state.credits + e.cost
      end
    end
  end

  local function emit(ev)
    if on_event then on_event(ev) end
  end

  local function finish(item, status, err)
    item.status = status
    if err then item.error = tostring(err.message or err) end
    state.finished[status] = (state.finished[status] or 0) + 1
    if item.key and j then item.entry = j:entry(item.key) end
    append_line(results_path, batch.result(item))
    emit({ type = "item", item = item, status = status })
  end

  local function hooks(item, meta, key)
    local show = function(ev)
      ev.item = item
      if ev.type == "submitted" then item.task_id = ev.task.id end
      if ev.type == "updated" or ev.type == "submitted" then item.status = ev.status end
      emit(ev)
    end
    local jhook = j and j:hook(meta, key) or nil
    return journal_mod.chain(jhook, show)
  end

  local function run_item(item)
    local sem = sems[item.provider]
    if not sem then
      sem = sched:semaphore(concurrency)
      sems[item.provider] = sem
    end
    sem:acquire()
    state.in_flight = state.in_flight + 1
    local client = prep.client(item.provider)
    local task, err
    if item.action == "submit" then
      if state.budget_stopped then
        state.in_flight = state.in_flight - 1
        sem:release()
        return finish(item, "budget")
      end
      if budget and state.committed + (item.usd or 0) > budget + 1e-9 then
        state.budget_stopped = true
        state.in_flight = state.in_flight - 1
        sem:release()
        return finish(item, "budget")
      end
      if opts.rate then
        local gap = 60 / opts.rate
        local last = last_submit[item.provider]
        if last and sched:time() < last + gap then vidu.sleep(last + gap - sched:time()) end
        last_submit[item.provider] = sched:time()
      end
      state.committed = state.committed + (item.usd or 0)
      item.status = "submitting"
      emit({ type = "submitting", item = item })
      task, err = client:submit(item.params, { on_event = hooks(item, {
        index = item.index, axes = item.axes, file = item.file, batch = prep.plan.name }) })
      if not task then
        state.in_flight = state.in_flight - 1
        sem:release()
        if err and err.may_exist then
          if err.task_id then item.task_id = err.task_id end
          return finish(item, err.task_id and "incomplete" or "may_exist", err)
        end
        state.committed = state.committed - (item.usd or 0)
        return finish(item, "rejected", err)
      end
    else
      task, err = client:task(item.entry.handle, { on_event = hooks(item, nil, item.key) })
      if not task then
        state.in_flight = state.in_flight - 1
        sem:release()
        return finish(item, "error", err)
      end
    end
    local ok, werr = task:wait{ timeout = opts.timeout }
    state.in_flight = state.in_flight - 1
    sem:release()
    item.cost = task.cost
    if type(task.cost) == "number" then
      local usd = prices.reported_usd(item.provider, task.cost)
      if usd then
        state.committed = state.committed - (item.usd or 0) + usd
      else
        state.credits = state.credits + task.cost
      end
    end
    if not ok then
      if task:done() then
        state.spent = state.spent + (prices.reported_usd(item.provider, task.cost) or item.usd or 0)
        return finish(item, task.status, werr)
      end
      return finish(item, "incomplete", werr)
    end
    state.spent = state.spent + (prices.reported_usd(item.provider, task.cost) or item.usd or 0)
    item.status = "downloading"
    emit({ type = "downloading", item = item, task = task })
    local dok, derr = task:download(item.out, { on_progress = function(bytes, total)
      item.bytes, item.total = bytes, total
    end })
    if not dok then return finish(item, "error", derr) end
    return finish(item, "succeeded")
  end

  if budget then
    for _, item in ipairs(prep.items) do
      if item.action == "submit" and not item.usd then
        error("batch.run: a budget needs a price for every submit: " .. tostring(item.price_note), 2)
      end
    end
  end
  local jobs = {}
  -- Re-attaches first (they are already paid), then submits in plan order.
  for _, want in ipairs({ "attach", "download", "submit" }) do
    for _, item in ipairs(prep.items) do
      if item.action == want then
        jobs[#jobs + 1] = function() return run_item(item) end
      end
    end
  end
  for _, item in ipairs(prep.items) do
    if item.action == "done" or item.action == "may_exist" or item.action == "invalid"
      or item.action == "duplicate" then
      state.finished[item.status] = (state.finished[item.status] or 0) + 1
    end
  end
  if #jobs > 0 then vidu.gather(jobs) end
  state.elapsed = sched:time() - state.started
  return state
end

--- Brings DIR/results.jsonl up to date with the journal after a resume (status, task id,
-- cost, error, video), keeping every line's place. true | nil, err.
function batch.refresh_results(dir, j)
  local path = dir .. "/results.jsonl"
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local lines = {}
  for line in f:lines() do
    local r = json.decode(line)
    if type(r) == "table" and r.key then
      local e = j:entry(r.key)
      if e and r.status ~= "invalid" and r.status ~= "duplicate" then
        local s = e.state
        if s == "queued" or s == "running" then s = "incomplete" end
        if s == "rejected" then s = "pending" end
        local file = "videos/" .. r.key .. ".mp4"
        if s == "succeeded" and not file_exists(dir .. "/" .. file) then s = "incomplete" end
        r.status, r.task_id, r.cost = s, e.id, e.cost
        r.error = e.error and e.error.message or nil
        r.video = s == "succeeded" and file or nil
      end
      lines[#lines + 1] = json.encode(r)
    elseif type(r) == "table" then
      lines[#lines + 1] = json.encode(r)
    end
  end
  f:close()
  local out = io.open(path .. ".tmp", "wb")
  if not out then return nil, "cannot write " .. path end
  out:write(table.concat(lines, "\n"), #lines > 0 and "\n" or "")
  out:close()
  return os.rename(path .. ".tmp", path)
end

--- The batch's items that a user must look at: submits that may exist.
function batch.may_exist(prep)
  local out = {}
  for _, item in ipairs(prep.items) do
    if item.status == "may_exist" then out[#out + 1] = item end
  end
  return out
end

batch.TERMINAL = TERMINAL

return batch
