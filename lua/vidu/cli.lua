--- vidu.cli: the `vidu` command (bin/vidu is a launcher for cli.main).
--
--   vidu generate IMAGE PROMPT [...]   one video, journaled in .vidu/journal.jsonl
--   vidu batch PLAN [...]              a plan's product of axes, journaled in DIR/journal.jsonl
--   vidu resume | status | cancel | emulator | report
--
-- Exit codes (cli.EXIT): 0 done; 1 a task failed or was refused, or a request failed;
-- 2 usage (bad command line, plan or parameters, no key, a budget over an unknown price);
-- 3 the budget stopped submits; 4 a submit may have made a task nobody knows the id of
-- (listed, never sent again: see `vidu resume --attach/--forget`); 5 unfinished (a wait
-- timed out or a task could not be reached: run `vidu resume` later).
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local files = require("vidu.files")
local shell_quote, dirname, file_exists, file_size = files.shell_quote, files.dirname,
  files.exists, files.size
local vidu = require("vidu")
local batch = require("vidu.batch")
local journal = require("vidu.journal")
local plan_mod = require("vidu.plan")
local prices = require("vidu.prices")
local progress = require("vidu.progress")
local registry = require("vidu.providers")
local report = require("vidu.report")
local url = require("vidu.url")

local cli = {}

local EXIT = { ok = 0, failed = 1, usage = 2, budget = 3, may_exist = 4, incomplete = 5 }
cli.EXIT = EXIT

-- When several outcomes meet, the one a script most needs to see wins.
local PRECEDENCE = { 4, 5, 1, 3, 0 }
local function worst(codes)
  for _, c in ipairs(PRECEDENCE) do
    if codes[c] then return c end
  end
  return 0
end

local function mkdir_p(dir)
  if dir == "" or dir == "." then return true end
  local ok = os.execute("mkdir -p " .. shell_quote(dir))
  return ok == true or ok == 0
end

local function errf(fmt, ...)
  io.stderr:write("vidu: ", string.format(fmt, ...), "\n")
  io.stderr:flush()
end

local function message_of(err)
  if type(err) == "table" then
    local m = err.message ~= nil and tostring(err.message) or tostring(err)
    if err.kind and err.kind ~= "failed" and not m:find(err.kind, 1, true) then
      m = err.kind .. ": " .. m
    end
    return m
  end
  return tostring(err)
end

---------------------------------------------------------------------------------------------
-- Command lines

local COMMON = { json = "bool", ["base-url"] = "value", progress = "value", help = "bool",
  poll = "value" }

-- Parses argv[first..] against flags = { name = "value" | "bool" | "list" }: opts, positional
-- | nil, message.
local function parse(argv, first, flags)
  local opts, pos = {}, {}
  local i = first
  while i <= #argv do
    local a = argv[i]
    if a == "-h" then a = "--help" end
    if a == "--" then
      for k = i + 1, #argv do pos[#pos + 1] = argv[k] end
      break
    elseif a:sub(1, 2) == "--" and #a > 2 then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local kind = flags[name] or COMMON[name]
      if not kind then return nil, "unknown option --" .. name end
      if kind == "bool" then
        if value then return nil, "--" .. name .. " takes no value" end
        opts[name] = true
      else
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, "--" .. name .. " needs a value" end
        end
        if kind == "list" then
          opts[name] = opts[name] or {}
          table.insert(opts[name], value)
        else
          opts[name] = value
        end
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

local function number_opt(opts, name, whole, min)
  local v = opts[name]
  if v == nil then return nil end
  local n = tonumber(v)
  if not n or (whole and n % 1 ~= 0) or (min and n < min) then
    return nil, string.format("--%s needs %s%s, got %q", name, whole and "a whole number" or "a number",
      min and (" >= " .. min) or "", tostring(v))
  end
  return n
end

---------------------------------------------------------------------------------------------
-- Context: clients, output

local Ctx = {}
Ctx.__index = Ctx

local function new_ctx(opts, cmd)
  local mode = "plain"
  if opts.json then
    mode = "json"
  elseif opts.progress == "live" or opts.progress == "plain" then
    mode = opts.progress
  elseif opts.progress ~= nil then
    return nil, "--progress is live or plain"
  elseif progress.stdout_is_tty() then
    mode = "live"
  end
  local base = opts["base-url"] or os.getenv("VIDU_BASE_URL")
  if base == "" then base = nil end
  if base and not url.origin(base) then return nil, "--base-url must be an http(s) URL: " .. base end
  local poll
  if opts.poll then
    local first, max = opts.poll:match("^([%d.]+),?([%d.]*)$")
    first, max = tonumber(first), tonumber(max)
    if not first or first <= 0 or (max and max < first) then
      return nil, "--poll takes FIRST[,MAX] in seconds, got " .. opts.poll
    end
    poll = { first = first, max = max or math.max(first, 15) }
  end
  local sched = vidu.scheduler()
  return setmetatable({
    cmd = cmd, mode = mode, base_url = base, clients = {}, poll = poll,
    view = progress.new{ mode = mode, clock = function() return sched:time() end },
  }, Ctx)
end

local function is_loopback(u)
  local host = (url.origin(u) or ""):match("^https?://%[?([^%]/:]+)")
  return host == "127.0.0.1" or host == "localhost" or host == "::1"
end

--- The client of a provider for this command (one per provider). Raises with a message for
-- people when it cannot be made (an unknown provider, no key).
function Ctx:client(provider, dry_run)
  local c = self.clients[provider]
  if c then return c end
  local entry = registry.get(provider)
  if not entry then
    error(string.format("unknown provider %q (known: %s)", tostring(provider),
      table.concat(registry.names, ", ")), 0)
  end
  local key = os.getenv(entry.env_key)
  if key == "" then key = nil end
  if not key then
    if self.base_url and is_loopback(self.base_url) then
      key = "local-emulator" -- the emulator takes any key; a loopback relay answers 401
    elseif dry_run then
      key = "dry-run" -- nothing is sent
    else
      error(string.format("no API key for %s: set %s (or --base-url to the emulator)", provider,
        entry.env_key), 0)
    end
  end
  local ok, res = pcall(vidu.client, provider, { api_key = key, base_url = self.base_url,
    poll = self.poll })
  if not ok then error(tostring(res):gsub("^[^:]*:%d+: ", ""), 0) end
  self.clients[provider] = res
  return res
end

--- Prints a formatted line through the progress display (clearing a live line first).
function Ctx:say(fmt, ...)
  self.view:line(string.format(fmt, ...))
end

-- A ticker that redraws the live line until done() is true (live mode only).
local function ticker(ctx, draw, done)
  if ctx.mode ~= "live" then return end
  vidu.spawn(function()
    while not done() do
      draw()
      vidu.sleep(0.25)
    end
  end)
end

-- How long tasks of this provider and model took before (the journal's successes), as a
-- median in seconds, or nil: the ETA before this process has seen a task finish.
local function learned_duration(j, provider, model)
  local list = {}
  for _, e in ipairs(j:entries()) do
    if e.provider == provider and e.state == "succeeded" and e.submitted_at and e.finished_at
      and (model == nil or (e.params and e.params.model == model)) then
      list[#list + 1] = e.finished_at - e.submitted_at
    end
  end
  if #list == 0 then return nil end
  table.sort(list)
  return list[math.floor((#list + 1) / 2)]
end

---------------------------------------------------------------------------------------------
-- Help

local HELP = {}

HELP.main = [[
usage: vidu COMMAND [options]   (vidu COMMAND --help for each)

  generate IMAGE PROMPT   make one video
  batch PLAN              run a plan: the product of its axes, journaled, resumable
  resume                  re-attach unfinished tasks of a journal, download finished ones
  status                  the tasks of a journal and their states
  cancel ID|KEY|--all     cancel tasks (where the provider can)
  emulator [flags]        start the offline emulator of all five providers
  report DIR              write DIR/index.html, the contact sheet of a batch

Keys come from the providers' variables (FAL_KEY, VIDU_API_KEY, WAVESPEED_API_KEY,
VTRIX_API_KEY, VIDU_RELAY_API_KEY). --base-url URL (or VIDU_BASE_URL) points every provider
at the emulator or a relay. --json prints one JSON object per event; --progress live|plain
chooses the display (default: live on a terminal); --poll FIRST[,MAX] sets the seconds before
a task's first status poll (and the longest gap), for tasks whose length you know.

exit codes: 0 done, 1 failed, 2 usage, 3 budget stop, 4 a submit may exist (listed, not
re-sent), 5 unfinished (run vidu resume later)
]]

HELP.generate = [[
usage: vidu generate IMAGE PROMPT [--provider P] [--model M] [--seed N]
                     [--motion auto|small|medium|large] [--duration S] [--out FILE]
                     [--journal FILE] [--timeout S] [--force] [--json] [--base-url URL]

Submits one generation, waits for it and downloads the video to --out (default
vidu-KEY.mp4). Journaled in .vidu/journal.jsonl: the same command again re-attaches or
re-downloads instead of paying twice (--force sends a new task). Provider: --provider, or
$VIDU_PROVIDER, or vidu.
]]

HELP.batch = [[
usage: vidu batch PLAN [--out DIR] [--journal FILE] [--concurrency N] [--budget USD]
                  [--price PROVIDER/MODEL=USD]... [--rate N] [--timeout S] [--dry-run]
                  [--no-report] [--json] [--base-url URL]

PLAN is a JSON file or a Lua file returning a table; each axis a value or a list:
  { "provider": "vidu", "model": "viduq1", "images": ["a.png"], "prompts": ["..."],
    "seeds": [1, 2, 3], "motions": ["small", "large"] }
(also providers, models, durations; params = fixed parameters; name, out, concurrency,
budget, prices, layout). Images are relative to the plan's directory.

Runs the product of the axes concurrently (--concurrency tasks per provider, default 5;
--rate submits per minute per provider), writes DIR/videos/KEY.mp4, DIR/results.jsonl as
items finish, and DIR/index.html at the end. DIR: --out, else the plan's "out", else
NAME-out for a plan file NAME.json. The journal (default DIR/journal.jsonl) makes a
re-run skip what it holds. --budget stops before a submit that would pass the cap (every
price must be known: --price overrides). --dry-run validates every item, sends nothing, and
prints the count and the estimated cost.
]]

HELP.resume = [[
usage: vidu resume [--journal FILE] [--attach KEY=TASK_ID]... [--forget KEY]...
                   [--timeout S] [--json] [--base-url URL]

Re-attaches every unfinished task of the journal (default .vidu/journal.jsonl) and downloads
what finished. A submit whose answer was lost is listed as "may exist" and never sent again:
look for it at the provider, then --attach KEY=TASK_ID (it exists) or --forget KEY (it does
not; a batch re-run will send it). KEY may be any unique prefix.
]]

HELP.status = [[
usage: vidu status [--journal FILE] [--json]

The journal's tasks (default .vidu/journal.jsonl): key, provider, task id, state, cost, file
or error. Reads only. Exit 0 when everything succeeded, 4 when a submit may exist, 5 when
tasks are unfinished, 1 when some failed.
]]

HELP.cancel = [[
usage: vidu cancel ID|KEY... [--all] [--journal FILE] [--provider P] [--json] [--base-url URL]

Cancels tasks by task id or journal key (prefix), or --all unfinished tasks of the journal.
A task id that is not in the journal needs --provider. fal and Vidu can cancel; the others
answer "unsupported" (exit 1).
]]

HELP.emulator = [[
usage: vidu emulator [--port N] [--seed S] [--config FILE] [--progress polls|time]
                     [--polls N] [--seconds T] [--outcome success|failed|moderated] [--no-ffmpeg]

Starts bin/vidu-emulator (all five providers on one loopback port) in the foreground; its
first line is the base URL to pass as --base-url or VIDU_BASE_URL.
]]

HELP.report = [[
usage: vidu report DIR

Writes DIR/index.html from DIR/results.jsonl and DIR/plan.json: every video in a grid along
the plan's axes, playing muted in a loop, a filter per parameter, failures with their error.
]]

---------------------------------------------------------------------------------------------
-- generate

local function cmd_generate(ctx, o, pos)
  if #pos ~= 2 then return nil, "generate needs IMAGE and PROMPT" end
  local provider = o.provider or os.getenv("VIDU_PROVIDER") or "vidu"
  local seed, serr = number_opt(o, "seed", true, 0)
  if serr then return nil, serr end
  local duration, derr = number_opt(o, "duration", true, 1)
  if derr then return nil, derr end
  local timeout, terr = number_opt(o, "timeout", false, 0)
  if terr then return nil, terr end
  local params = { image = pos[1], prompt = pos[2], model = o.model, seed = seed,
    movement_amplitude = o.motion, duration = duration }
  local okc, client = pcall(ctx.client, ctx, provider)
  if not okc then return nil, client end
  local okk, checked, cerr = pcall(client.check, client, params)
  if not okk then return nil, tostring(checked) end
  if not checked then return nil, "invalid: " .. message_of(cerr) end
  local key = journal.key(provider, checked)
  local jpath = o.journal or ".vidu/journal.jsonl"
  if not mkdir_p(dirname(jpath)) then return EXIT.failed, errf("cannot create %s", dirname(jpath)) end
  local j, jerr = journal.open(jpath)
  if not j then return EXIT.failed, errf("%s", jerr) end
  local out = o.out or ("vidu-" .. key .. ".mp4")
  if not mkdir_p(dirname(out)) then return EXIT.failed, errf("cannot create %s", dirname(out)) end
  local entry = j:entry(key)
  local view = ctx.view
  local t = { provider = provider, status = nil, elapsed = 0 }
  local est = learned_duration(j, provider, checked.model)
  local task_ref
  local show = function(ev)
    view:json(progress.event_fields(ev))
    if ev.task then
      task_ref = ev.task
      t.elapsed = vidu.scheduler():time() - ev.task.started_at
      t.id, t.status = ev.task.id, ev.task.status
      t.queue_position, t.progress = ev.task.queue_position, ev.task.progress
    end
    if ev.type == "submitted" then
      ctx:say("submitted: %s task %s (key %s)", provider, ev.task.id, key)
    elseif ev.type == "updated" and ctx.mode == "plain" then
      local qp = ev.task.queue_position
      ctx:say("%s%s", ev.status, qp and (" #" .. qp .. " in queue") or "")
    elseif ev.type == "finished" then
      ctx:say("%s after %s", ev.status, progress.clock(t.elapsed))
    end
  end
  local function draw()
    if task_ref then
      t.elapsed = vidu.scheduler():time() - task_ref.started_at
      local e = client.pace.estimate or est
      t.eta = e and t.bytes == nil and math.max(0, e - t.elapsed) or nil
    end
    view:status(progress.task_line(t))
  end

  local code = vidu.run(function()
    local task, err
    if entry and entry.state ~= "rejected" and not o.force then
      local s = entry.state
      if s == "may_exist" then
        ctx:say("a submit of these parameters may have made a task (key %s) whose id was never " ..
          "received: not sending it again. Look for it at %s, then: vidu resume --journal %s " ..
          "--attach %s=TASK_ID, or --forget %s", key, provider, jpath, key, key)
        view:json{ type = "may_exist", key = key, provider = provider }
        return EXIT.may_exist
      elseif s == "failed" or s == "canceled" then
        ctx:say("this generation already %s (task %s): %s; --force sends a new one", s,
          tostring(entry.id), entry.error and tostring(entry.error.message) or "")
        view:json{ type = "already", key = key, status = s, id = entry.id }
        return EXIT.failed
      elseif s == "succeeded" and file_exists(out) then
        ctx:say("already made: %s (task %s)", out, tostring(entry.id))
        view:json{ type = "already", key = key, status = s, id = entry.id, path = out }
        return EXIT.ok
      end
      ctx:say("re-attaching %s task %s (key %s)", provider, tostring(entry.id), key)
      task, err = client:task(entry.handle, { on_event = journal.chain(j:hook(nil, key), show) })
    else
      task, err = client:submit(params, {
        on_event = journal.chain(j:hook({ out = journal.abspath(out) }), show) })
    end
    if not task then
      ctx.view:close()
      errf("%s", message_of(err))
      view:json{ type = "failed", error = message_of(err), may_exist = err and err.may_exist }
      if err and err.may_exist then
        if err.task_id then return EXIT.incomplete end
        errf("the task may exist (key %s): see vidu resume --help", key)
        return EXIT.may_exist
      end
      return EXIT.failed
    end
    task_ref = task
    local done = false
    ticker(ctx, draw, function() return done end)
    local ok, werr = task:wait{ timeout = timeout }
    if not ok then
      done = true
      view:close()
      if task:done() then
        errf("%s", message_of(werr))
        return EXIT.failed
      end
      errf("%s; vidu resume --journal %s picks it up later", message_of(werr), jpath)
      return EXIT.incomplete
    end
    t.bytes = 0
    local dok, dwerr = task:download(journal.abspath(out), { on_progress = function(b, total)
      t.bytes, t.total = b, total
    end })
    done = true
    view:close()
    if not dok then
      errf("download: %s", message_of(dwerr))
      return EXIT.incomplete
    end
    ctx:say("saved %s (%.1f MB) · task %s%s", out, (file_size(out) or 0) / 1e6, task.id,
      task.cost and (" · cost " .. tostring(task.cost)) or "")
    view:json{ type = "summary", status = "succeeded", path = out, id = task.id, key = key,
      cost = task.cost, exit = 0 }
    return EXIT.ok
  end)
  return code
end

---------------------------------------------------------------------------------------------
-- batch

local function price_overrides(p, list)
  local o = {}
  for k, v in pairs(p.prices or {}) do o[k] = v end
  for _, s in ipairs(list or {}) do
    local name, usd = prices.parse_override(s)
    if not name then return nil, usd end
    o[name] = usd
  end
  return o
end

local function describe_item(item)
  local parts = { "#" .. item.index, item.provider }
  for _, name in ipairs({ "model", "image", "prompt", "duration", "seed", "motion" }) do
    local v = item.axes[name]
    if v ~= nil then
      v = tostring(v)
      if name == "image" then v = v:match("([^/]+)$") or v end
      if #v > 40 then v = v:sub(1, 37) .. "..." end
      parts[#parts + 1] = name .. "=" .. (name == "prompt" and string.format("%q", v) or v)
    end
  end
  return table.concat(parts, " ")
end

local LIVE_STATES = { "submitting", "queued", "running", "downloading" }

local function batch_counts(prep)
  local c = {}
  for _, item in ipairs(prep.items) do
    local s = item.status or "pending"
    c[s] = (c[s] or 0) + 1
  end
  return c
end

local function batch_line(ctx, prep, opts)
  local c = batch_counts(prep)
  local st = prep.state
  local n = #prep.items
  local parts = { "[" .. progress.clock(ctx.view:elapsed()) .. "]",
    string.format("%d/%d done", c.succeeded or 0, n) }
  local bad = (c.failed or 0) + (c.canceled or 0) + (c.rejected or 0) + (c.error or 0)
  if bad > 0 then parts[#parts + 1] = bad .. " failed" end
  for _, s in ipairs(LIVE_STATES) do
    if c[s] then parts[#parts + 1] = c[s] .. " " .. s end
  end
  if c.pending then parts[#parts + 1] = c.pending .. " waiting" end
  if c.may_exist then parts[#parts + 1] = c.may_exist .. " may exist" end
  if c.budget then parts[#parts + 1] = c.budget .. " over budget" end
  if st then
    local money = progress.usd(st.committed) .. " committed"
    if opts.budget then money = money .. " of " .. progress.usd(opts.budget) end
    money = money .. ", " .. progress.usd(st.spent) .. " spent"
    if prep.estimate.unknown > 0 and not opts.budget then money = money .. " (+unknown)" end
    if st.credits > 0 then money = money .. ", " .. st.credits .. " credits" end
    parts[#parts + 1] = money
  end
  -- ETA: the learned duration of a task times the waves left, less what the oldest in
  -- flight has done.
  local est = opts.estimate()
  if est then
    local waiting = (c.pending or 0)
    local waves = math.ceil(waiting / (opts.concurrency * opts.nproviders))
    local in_flight = (c.submitting or 0) + (c.queued or 0) + (c.running or 0)
    local eta = waves * est + (in_flight > 0 and est * 0.5 or 0)
    if waiting + in_flight > 0 then parts[#parts + 1] = "ETA " .. progress.clock(eta) end
  end
  return table.concat(parts, " · ")
end

local function cmd_batch(ctx, o, pos)
  if #pos ~= 1 then return nil, "batch needs one PLAN file" end
  local p, perr = plan_mod.load(pos[1])
  if not p then return nil, perr end
  local overrides, oerr = price_overrides(p, o.price)
  if not overrides then return nil, oerr end
  local budget, berr = number_opt(o, "budget", false, 0)
  if berr then return nil, berr end
  budget = budget or p.budget
  local conc, cerr = number_opt(o, "concurrency", true, 1)
  if cerr then return nil, cerr end
  conc = conc or p.concurrency or batch.DEFAULT_CONCURRENCY
  local rate, rerr = number_opt(o, "rate", false, 0.001)
  if rerr then return nil, rerr end
  rate = rate or p.rate
  local timeout, terr = number_opt(o, "timeout", false, 0)
  if terr then return nil, terr end
  local stem = (pos[1]:match("([^/]+)$") or pos[1]):gsub("%.[^.]*$", "")
  local dir = o.out or p.out or (stem .. "-out")
  local jpath = o.journal or (dir .. "/journal.jsonl")
  local dry = o["dry-run"]
  local view = ctx.view
  -- A provider without a key (or unknown) is one setup mistake, not one per item.
  for _, name in ipairs(p.axes.provider) do
    local okc, cerr2 = pcall(ctx.client, ctx, name, dry)
    if not okc then return nil, cerr2 end
  end

  local j, jerr
  if dry then
    j, jerr = journal.open(jpath, { readonly = true })
  else
    if not mkdir_p(dir) or not mkdir_p(dirname(jpath)) then
      errf("cannot create %s", dir)
      return EXIT.failed
    end
    j, jerr = journal.open(jpath)
  end
  if not j then
    errf("%s", jerr)
    return EXIT.failed
  end
  for _, pr in ipairs(j.problems) do
    ctx:say("journal %s: line %d is %s (%d bytes), skipped", jpath, pr.line, pr.reason, pr.bytes)
  end
  local prep = batch.prepare(p, { dir = dir, journal = j, prices = overrides,
    client = function(provider) return ctx:client(provider, dry) end })
  local c = prep.counts
  for _, item in ipairs(prep.items) do
    if item.action == "invalid" then ctx:say("invalid: %s: %s", describe_item(item), item.error) end
  end
  -- A budget needs a price for every submit to come.
  if budget then
    local missing = {}
    for _, item in ipairs(prep.items) do
      if item.action == "submit" and not item.usd and not missing[item.price_note] then
        missing[item.price_note] = true
        missing[#missing + 1] = item.price_note
      end
    end
    if #missing > 0 then
      for _, m in ipairs(missing) do errf("--budget: %s", m) end
      view:json{ type = "summary", exit = EXIT.usage, error = "unknown price with a budget" }
      return EXIT.usage
    end
  end

  local est_text
  if c.submit == 0 then
    est_text = "nothing to send"
  elseif prep.estimate.unknown == c.submit then
    est_text = "unknown (no documented price: --price PROVIDER/MODEL=USD)"
  else
    est_text = progress.usd(prep.estimate.usd) ..
      (prep.estimate.unknown > 0 and (" + unknown for " .. prep.estimate.unknown .. " items") or "")
  end
  if dry then
    local axes = {}
    for _, name in ipairs(p.order) do axes[#axes + 1] = #p.axes[name] .. " " .. name end
    ctx:say("%d items (%s)", c.items, table.concat(axes, " x "))
    ctx:say("valid: %d, invalid: %d, duplicates: %d; already in the journal: %d; to send: %d",
      c.items - c.invalid, c.invalid, c.duplicate, c.attach + c.download + c.done + c.may_exist, c.submit)
    ctx:say("estimated cost of the submits: %s", est_text)
    if budget then
      ctx:say("budget %s, already committed %s", progress.usd(budget), progress.usd(prep.committed))
    end
    view:json{ type = "dry_run", items = c.items, invalid = c.invalid, duplicates = c.duplicate,
      held = c.attach + c.download + c.done + c.may_exist, submit = c.submit,
      estimate_usd = prep.estimate.usd, unknown_price = prep.estimate.unknown,
      exit = c.invalid > 0 and EXIT.usage or EXIT.ok }
    return c.invalid > 0 and EXIT.usage or EXIT.ok
  end

  if c.invalid > 0 then
    -- Half a plan is not what was asked for: nothing is sent until every item is valid.
    errf("%d of %d items are invalid (listed above): nothing sent", c.invalid, c.items)
    view:json{ type = "summary", exit = EXIT.usage, invalid = c.invalid }
    return EXIT.usage
  end
  local ok, derr = batch.prepare_dir(dir)
  if not ok then
    errf("%s", derr)
    return EXIT.failed
  end
  -- Every item's state as the run starts; lines are appended as items finish, and the
  -- whole file is written again at the end.
  batch.write_results(prep)
  view:json{ type = "start", items = c.items, submit = c.submit, attach = c.attach,
    download = c.download, done = c.done, may_exist = c.may_exist, invalid = c.invalid,
    journal = jpath, dir = dir }
  ctx:say("%d items: %d to send, %d to re-attach, %d to download, %d done before%s; estimated %s",
    c.items, c.submit, c.attach, c.download, c.done,
    c.may_exist > 0 and (", " .. c.may_exist .. " may exist (not sent)") or "", est_text)

  local providers = {}
  for _, item in ipairs(prep.items) do providers[item.provider] = true end
  local nproviders = 0
  for _ in pairs(providers) do nproviders = nproviders + 1 end
  local line_opts = { budget = budget, concurrency = conc, nproviders = nproviders,
    estimate = function()
      local best
      for name, cl in pairs(ctx.clients) do
        local e = cl.pace.estimate or learned_duration(j, name)
        if e and (not best or e > best) then best = e end
      end
      return best
    end }

  local on_event = function(ev)
    if ctx.mode == "json" then
      if ev.type == "item" then
        local r = batch.result(ev.item)
        r.type = "item"
        view:json(r)
      elseif ev.type ~= "submitting" or ev.provider then
        view:json(progress.event_fields(ev))
      end
      return
    end
    if ctx.mode == "plain" then
      if ev.type == "submitted" then
        ctx:say("[%s] #%d submitted %s task %s", progress.clock(view:elapsed()), ev.item.index,
          ev.provider, ev.task.id)
      elseif ev.type == "item" then
        local it = ev.item
        local st = prep.state
        ctx:say("[%s] #%d %s%s%s · %s committed, %s spent", progress.clock(view:elapsed()), it.index,
          ev.status, it.task_id and (" task " .. it.task_id) or "",
          ev.status == "succeeded" and (" -> " .. it.out) or (it.error and (": " .. it.error) or ""),
          progress.usd(st.committed), progress.usd(st.spent))
      end
    end
  end

  local done = false
  local state = vidu.run(function()
    ticker(ctx, function() view:status(batch_line(ctx, prep, line_opts)) end, function() return done end)
    local st = batch.run(prep, { concurrency = conc, budget = budget, timeout = timeout, rate = rate,
      on_event = on_event })
    done = true
    return st
  end)
  view:close()
  batch.write_results(prep)
  local rpath
  if not o["no-report"] then rpath = report.write(dir) end

  local counts = batch_counts(prep)
  local parts = {}
  for _, s in ipairs({ "succeeded", "failed", "canceled", "rejected", "error", "incomplete",
    "may_exist", "budget", "invalid", "duplicate" }) do
    if counts[s] then parts[#parts + 1] = counts[s] .. " " .. s:gsub("_", " ") end
  end
  ctx:say("%d items in %s: %s", #prep.items, progress.clock(state.elapsed), table.concat(parts, ", "))
  ctx:say("cost: %s spent, %s committed%s%s", progress.usd(state.spent), progress.usd(state.committed),
    budget and (" (budget " .. progress.usd(budget) .. ")") or "",
    state.credits > 0 and (", " .. state.credits .. " credits reported") or "")
  ctx:say("results: %s/results.jsonl%s", dir, rpath and (" · contact sheet: " .. rpath) or "")
  local may = batch.may_exist(prep)
  if #may > 0 then
    ctx:say("may exist (never sent again; look at the provider, then vidu resume --journal %s " ..
      "--attach KEY=TASK_ID or --forget KEY):", jpath)
    for _, item in ipairs(may) do ctx:say("  %s  %s", item.key, describe_item(item)) end
  end
  local codes = {}
  if counts.may_exist then codes[EXIT.may_exist] = true end
  if counts.incomplete or counts.error then codes[EXIT.incomplete] = true end
  if counts.failed or counts.canceled or counts.rejected then codes[EXIT.failed] = true end
  if counts.budget then codes[EXIT.budget] = true end
  local code = worst(codes)
  view:json{ type = "summary", items = #prep.items, counts = counts, spent_usd = state.spent,
    committed_usd = state.committed, credits = state.credits, budget_usd = budget,
    elapsed = state.elapsed, results = dir .. "/results.jsonl", report = rpath, exit = code }
  return code
end

---------------------------------------------------------------------------------------------
-- resume, status, cancel

local function one_entry(j, ref)
  local found = j:match(ref)
  if #found == 0 then return nil, string.format("%q is not a key or task id of the journal", ref) end
  if #found > 1 then return nil, string.format("%q matches %d entries: give more of the key", ref, #found) end
  return found[1]
end

local function open_existing(path)
  if not file_exists(path) then return nil, "no journal at " .. path end
  return journal.open(path)
end

local function cmd_resume(ctx, o, pos)
  if #pos > 0 then return nil, "resume takes no arguments (--journal FILE)" end
  local timeout, terr = number_opt(o, "timeout", false, 0)
  if terr then return nil, terr end
  local jpath = o.journal or ".vidu/journal.jsonl"
  local j, jerr = open_existing(jpath)
  if not j then return nil, jerr end
  for _, pr in ipairs(j.problems) do
    ctx:say("journal %s: line %d is %s (%d bytes), skipped", jpath, pr.line, pr.reason, pr.bytes)
  end
  for _, spec in ipairs(o.attach or {}) do
    local ref, id = spec:match("^([^=]+)=(.+)$")
    if not ref then return nil, "--attach takes KEY=TASK_ID, got " .. spec end
    local e, err = one_entry(j, ref)
    if not e then return nil, err end
    if e.state ~= "may_exist" then
      return nil, string.format("%s is %s, not a submit that may exist", e.key, e.state)
    end
    assert(j:adopt(e.key, id))
    ctx:say("%s: task %s adopted", e.key, id)
  end
  for _, ref in ipairs(o.forget or {}) do
    local e, err = one_entry(j, ref)
    if not e then return nil, err end
    if e.state ~= "may_exist" then
      return nil, string.format("%s is %s, not a submit that may exist", e.key, e.state)
    end
    assert(j:forget(e.key))
    ctx:say("%s: forgotten (a batch re-run will send it)", e.key)
  end
  local view = ctx.view
  local live = {}
  local on_event = function(ev)
    view:json(progress.event_fields(ev))
    if ev.task then live[ev.task] = ev.status end
    if ev.type == "finished" or ev.type == "downloaded" then
      ctx:say("%s task %s %s%s", ev.provider, ev.task.id,
        ev.type == "downloaded" and "downloaded" or ev.status,
        ev.path and (" -> " .. ev.path) or "")
    end
  end
  local clienterr
  local done = false
  local summary = vidu.run(function()
    ticker(ctx, function()
      local n, s = 0, {}
      for _, st in pairs(live) do
        n = n + 1
        s[st] = (s[st] or 0) + 1
      end
      local parts = {}
      for k, v in pairs(s) do parts[#parts + 1] = v .. " " .. k end
      table.sort(parts)
      view:status(string.format("[%s] %d tasks: %s", progress.clock(view:elapsed()), n,
        table.concat(parts, ", ")))
    end, function() return done end)
    local res = j:resume{ timeout = timeout, on_event = on_event, client = function(provider)
      local ok, c = pcall(ctx.client, ctx, provider)
      if not ok then
        clienterr = c
        error(c, 0)
      end
      return c
    end }
    done = true
    return res
  end)
  view:close()
  if clienterr then return nil, clienterr end
  local dir = dirname(jpath)
  if file_exists(dir .. "/results.jsonl") then
    batch.refresh_results(dir, j)
    report.write(dir)
  end
  ctx:say("resume: %d re-attached, %d downloaded, %d failed, %d may exist, %d unreachable",
    summary.attached, summary.downloaded, summary.failed, #summary.may_exist, #summary.errors)
  for _, e in ipairs(summary.errors) do
    ctx:say("  %s task %s: %s", e.entry.key, tostring(e.entry.id), message_of(e.err))
  end
  if #summary.may_exist > 0 then
    ctx:say("may exist (never sent again; look at the provider, then --attach KEY=TASK_ID or --forget KEY):")
    for _, e in ipairs(summary.may_exist) do
      ctx:say("  %s  %s %s", e.key, e.provider, e.params and e.params.prompt and
        string.format("prompt=%q seed=%s", tostring(e.params.prompt):sub(1, 40),
          tostring(e.params.seed)) or "")
    end
  end
  local codes = {}
  if #summary.may_exist > 0 then codes[EXIT.may_exist] = true end
  if #summary.errors > 0 then codes[EXIT.incomplete] = true end
  if summary.failed > 0 then codes[EXIT.failed] = true end
  local code = worst(codes)
  local may = {}
  for i, e in ipairs(summary.may_exist) do may[i] = e.key end
  view:json{ type = "summary", attached = summary.attached, downloaded = summary.downloaded,
    failed = summary.failed, may_exist = may, unreachable = #summary.errors, exit = code }
  return code
end

local function pad(s, n)
  s = tostring(s)
  if #s > n then return s:sub(1, n - 1) .. "~" end
  return s .. string.rep(" ", n - #s)
end

local function cmd_status(ctx, o, pos)
  if #pos > 0 then return nil, "status takes no arguments (--journal FILE)" end
  local jpath = o.journal or ".vidu/journal.jsonl"
  if not file_exists(jpath) then return nil, "no journal at " .. jpath end
  local j, jerr = journal.open(jpath, { readonly = true })
  if not j then return nil, jerr end
  for _, pr in ipairs(j.problems) do
    ctx:say("journal %s: line %d is %s (%d bytes), skipped", jpath, pr.line, pr.reason, pr.bytes)
  end
  local counts, codes = {}, {}
  if ctx.mode ~= "json" then
    ctx:say("%s %s %s %s %s %s", pad("KEY", 16), pad("PROVIDER", 9), pad("TASK", 22), pad("STATE", 10),
      pad("COST", 6), "FILE / ERROR")
  end
  for _, e in ipairs(j:entries()) do
    local state = e.state
    if state == "succeeded" and e.path and file_exists(e.path) then state = "downloaded" end
    counts[state] = (counts[state] or 0) + 1
    if state == "may_exist" then codes[EXIT.may_exist] = true end
    if state == "queued" or state == "running" or state == "succeeded" then codes[EXIT.incomplete] = true end
    if state == "failed" or state == "canceled" then codes[EXIT.failed] = true end
    local what = e.path or (e.error and e.error.message) or
      (e.params and e.params.prompt and string.format("%q", tostring(e.params.prompt))) or ""
    if ctx.mode == "json" then
      ctx.view:json{ type = "entry", key = e.key, provider = e.provider, id = e.id, state = state,
        cost = e.cost, path = e.path, error = e.error and e.error.message, params = e.params }
    else
      ctx:say("%s %s %s %s %s %s", pad(e.key, 16), pad(e.provider or "?", 9), pad(e.id or "-", 22),
        pad(state == "may_exist" and "may exist" or state, 10),
        pad(e.cost ~= nil and tostring(e.cost) or "-", 6),
        tostring(what):sub(1, 60))
    end
  end
  local parts = {}
  for k, v in pairs(counts) do parts[#parts + 1] = v .. " " .. k:gsub("_", " ") end
  table.sort(parts)
  local code = worst(codes)
  ctx:say("%d entries: %s", #j:entries(), table.concat(parts, ", "))
  ctx.view:json{ type = "summary", entries = #j:entries(), counts = counts, problems = #j.problems,
    exit = code }
  return code
end

local function cmd_cancel(ctx, o, pos)
  if #pos == 0 and not o.all then return nil, "cancel needs task ids or keys, or --all" end
  local jpath = o.journal or ".vidu/journal.jsonl"
  local j
  if file_exists(jpath) then
    local jerr
    j, jerr = journal.open(jpath)
    if not j then return nil, jerr end
  end
  local targets = {}
  if o.all then
    if not j then return nil, "no journal at " .. jpath end
    for _, e in ipairs(j:entries()) do
      if e.state == "queued" or e.state == "running" then targets[#targets + 1] = { entry = e } end
    end
  end
  for _, ref in ipairs(pos) do
    local e = j and j:match(ref)
    if e and #e == 1 then
      targets[#targets + 1] = { entry = e[1] }
    elseif e and #e > 1 then
      return nil, string.format("%q matches %d entries", ref, #e)
    elseif o.provider then
      targets[#targets + 1] = { id = ref, provider = o.provider }
    else
      return nil, string.format("%q is not in %s: give --provider to cancel it by id", ref, jpath)
    end
  end
  local codes = {}
  local res = vidu.run(function()
    for _, t in ipairs(targets) do
      local provider = t.entry and t.entry.provider or t.provider
      local okc, client = pcall(ctx.client, ctx, provider)
      if not okc then return client end
      local task, err
      local hook = j and (t.entry and j:hook(nil, t.entry.key) or j:hook()) or nil
      if t.entry then
        task, err = client:task(t.entry.handle, { on_event = hook })
      else
        task, err = client:task(t.id, { on_event = hook })
      end
      local id = t.entry and t.entry.id or t.id
      if task and task:done() then
        ctx:say("%s task %s: already %s", provider, id, task.status)
        ctx.view:json{ type = "cancel", provider = provider, id = id, status = task.status }
      else
        local ok
        if task then ok, err = task:cancel() end
        -- Look once more, so a provider that confirms on the next poll is journaled canceled.
        if ok and not task:done() then task:refresh() end
        if ok then
          ctx:say("%s task %s: cancel requested%s", provider, id,
            task:done() and (" (" .. task.status .. ")") or "")
          ctx.view:json{ type = "cancel", provider = provider, id = id, ok = true, status = task.status }
        else
          codes[EXIT.failed] = true
          ctx:say("%s task %s: %s", provider, id, message_of(err))
          ctx.view:json{ type = "cancel", provider = provider, id = id, ok = false, error = message_of(err),
            error_kind = err and err.kind }
        end
      end
    end
  end)
  if res then return nil, res end
  if #targets == 0 then ctx:say("nothing to cancel") end
  return worst(codes)
end

---------------------------------------------------------------------------------------------
-- emulator, report

local function cmd_emulator(_, _, _, argv, env)
  local script = env.bin_dir and (env.bin_dir .. "/vidu-emulator")
  local cmd
  if script and file_exists(script) then
    cmd = shell_quote(env.interpreter or os.getenv("VIDU_LUA") or "lua5.4") .. " " .. shell_quote(script)
  else
    cmd = "vidu-emulator"
  end
  -- exec: the emulator is our child, not the shell's, and --exit-with-parent makes it go when
  -- this process goes (plain Lua cannot exec it in our place).
  cmd = "exec " .. cmd
  for i = 2, #argv do cmd = cmd .. " " .. shell_quote(argv[i]) end
  cmd = cmd .. " --exit-with-parent"
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a > 255 and math.floor(a / 256) or a end
  return a == true and 0 or (c or 1)
end

local function cmd_report(ctx, _, pos)
  if #pos ~= 1 then return nil, "report needs one DIR" end
  local path, info = report.write(pos[1])
  if not path then return nil, info end
  ctx:say("%s: %d items, %d videos", path, info.items, info.videos)
  ctx.view:json{ type = "report", path = path, items = info.items, videos = info.videos, exit = 0 }
  return EXIT.ok
end

---------------------------------------------------------------------------------------------

local COMMANDS = {
  generate = { run = cmd_generate, flags = { provider = "value", model = "value", seed = "value",
    motion = "value", duration = "value", out = "value", journal = "value", timeout = "value",
    force = "bool" } },
  batch = { run = cmd_batch, flags = { out = "value", journal = "value", concurrency = "value",
    budget = "value", price = "list", rate = "value", timeout = "value", ["dry-run"] = "bool",
    ["no-report"] = "bool" } },
  resume = { run = cmd_resume, flags = { journal = "value", attach = "list", forget = "list",
    timeout = "value" } },
  status = { run = cmd_status, flags = { journal = "value" } },
  cancel = { run = cmd_cancel, flags = { journal = "value", all = "bool", provider = "value" } },
  report = { run = cmd_report, flags = {} },
  emulator = { raw = true },
}

--- Runs the command line argv (arg of bin/vidu): returns the exit code. env: bin_dir (where
-- bin/vidu is, to find vidu-emulator beside it), interpreter (the Lua that runs it).
function cli.main(argv, env)
  env = env or {}
  local name = argv[1]
  if name == nil or name == "-h" or name == "--help" or name == "help" then
    local topic = name == "help" and argv[2]
    if topic and HELP[topic] then io.stdout:write(HELP[topic]) return EXIT.ok end
    io.stdout:write(HELP.main)
    return name == nil and EXIT.usage or EXIT.ok
  end
  local cmd = COMMANDS[name]
  if not cmd then
    errf("unknown command %q (vidu --help lists them)", tostring(name))
    return EXIT.usage
  end
  if cmd.raw then
    if argv[2] == "--help" or argv[2] == "-h" then io.stdout:write(HELP[name]) return EXIT.ok end
    return cmd_emulator(nil, nil, nil, argv, env)
  end
  local opts, pos = parse(argv, 2, cmd.flags)
  if not opts then
    errf("%s: %s (vidu %s --help)", name, pos, name)
    return EXIT.usage
  end
  if opts.help then io.stdout:write(HELP[name]) return EXIT.ok end
  local ctx, cerr = new_ctx(opts, name)
  if not ctx then
    errf("%s: %s", name, cerr)
    return EXIT.usage
  end
  local ok, code, msg = pcall(cmd.run, ctx, opts, pos)
  if not ok then
    ctx.view:close()
    errf("%s: %s", name, tostring(code))
    return EXIT.failed
  end
  if code == nil then
    ctx.view:close()
    errf("%s: %s", name, tostring(msg))
    ctx.view:json{ type = "summary", exit = EXIT.usage, error = tostring(msg) }
    return EXIT.usage
  end
  return code
end

return cli
