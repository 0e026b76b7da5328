-- The fault matrix (issue 9): every fault kind of the emulator x every provider x every phase
-- of a generation (submit, poll, fal's result, download) x once and persistent, driven through
-- the public client API only (vidu.client, submit, wait, download) against one emulator.
-- Shared by bench/faults.lua (`make faults`, prints the table) and spec/faults_spec.lua
-- (asserts the rules on every row).
--
--   local matrix = require("support.fault_matrix")
--   local m = matrix.new()                      -- starts an emulator
--   local rows = m:run(matrix.cases{ providers = {...}, phases = {...}, kinds = {...} })
--   matrix.violations(row) -> { "message", ... }  (empty when the row keeps the rules)
--   print(matrix.table(rows)); print(matrix.summary(rows)); m:stop()
local vidu = require("vidu")
local core = require("vidu.core")
local scheduler = require("vidu.scheduler")
local launch = require("vidu.launch")
local ejson = require("vidu.emulator.json")
local cjson = require("cjson")

local M = {}

M.PROVIDERS = { "fal", "vidu", "relay", "wavespeed", "vtrix" }
M.PHASES = { "submit", "poll", "result", "download" }
M.MODES = { "once", "persistent" }

-- Every fault the emulator has (lua/vidu/emulator/faults.lua), as rule fields. A latency below
-- the request timeout: the answer comes late but comes.
M.KINDS = {
  { name = "429", kind = "status", status = 429 },
  { name = "500", kind = "status", status = 500 },
  { name = "502", kind = "status", status = 502 },
  { name = "503", kind = "status", status = 503 },
  { name = "reset_before", kind = "reset_before" },
  { name = "reset_after", kind = "reset_after" },
  { name = "hang", kind = "hang" },
  { name = "latency", kind = "latency", latency_ms = 250 },
  { name = "truncate", kind = "truncate" },
  { name = "malformed_json", kind = "malformed_json" },
  { name = "html_502", kind = "html_502" },
}

-- Faults the emulator answers without processing the request: the only ones after which a
-- submit may be sent again (the client cannot know that of the others).
M.NOT_PROCESSED = { ["429"] = true, ["503"] = true, reset_before = true, html_502 = true }

-- Where each phase's requests go, per provider (Lua patterns on the path). Images are given as
-- URLs, so the submit is the only POST of a row.
M.ROUTES = {
  fal = { submit = "^/fal%-ai/vidu/.*image%-to%-video$", poll = "^/fal%-ai/vidu/requests/[^/]+/status$",
    result = "^/fal%-ai/vidu/requests/[^/]+$" },
  -- Vidu's polls: a task's creations, or the task list that batches them (GET /ent/v2/tasks).
  vidu = { submit = "^/ent/v2/img2video$", poll = "^/ent/v2/tasks" },
  relay = { submit = "^/vidu/v2/img2video$", poll = "^/vidu/v2/tasks/[^/]+/creations$" },
  wavespeed = { submit = "^/api/v3/vidu/image%-to%-video", poll = "^/api/v3/predictions/" },
  vtrix = { submit = "^/model/v1/generation$", poll = "^/model/v1/generation/task/" },
}
M.DOWNLOAD = "^/media/v/"

-- Client settings: short, so a row takes a fraction of a second and a hang a few seconds.
M.SETTINGS = {
  timeout = 2, connect_timeout = 2, retries = 2, stall_timeout = 1, download_timeout = 5,
  poll = { first = 0.02, max = 0.1, factor = 1.5 }, retry = { base = 0.02, cap = 0.1 },
}
M.WAIT_TIMEOUT = 4

local IMAGE = "https://example.com/in.png"
local PROMPT = "The astronaut waved and the camera moved up."

--- The cases to run: opts.providers, phases, kinds (names of M.KINDS), modes; each defaults to
-- all of them. "result" applies to fal only (its result is a separate GET).
function M.cases(opts)
  opts = opts or {}
  local kinds = {}
  local want = {}
  for _, n in ipairs(opts.kinds or {}) do want[n] = true end
  for _, k in ipairs(M.KINDS) do
    if not opts.kinds or want[k.name] then kinds[#kinds + 1] = k end
  end
  local out = {}
  for _, p in ipairs(opts.providers or M.PROVIDERS) do
    for _, phase in ipairs(opts.phases or M.PHASES) do
      if phase ~= "result" or M.ROUTES[p].result then
        for _, k in ipairs(kinds) do
          for _, mode in ipairs(opts.modes or M.MODES) do
            out[#out + 1] = { provider = p, phase = phase, fault = k, mode = mode }
          end
        end
      end
    end
  end
  return out
end

local Matrix = {}
Matrix.__index = Matrix

--- Starts an emulator for the matrix (opts.seed, default 9).
function M.new(opts)
  opts = opts or {}
  local child = launch.start{ seed = opts.seed or 9 }
  local self = setmetatable({ emu = child, url = child.url, engine = core.engine{},
    dir = os.tmpname() }, Matrix)
  os.remove(self.dir)
  assert(os.execute("mkdir -p " .. self.dir))
  return self
end

-- A control call to the emulator: JSON in, decoded JSON out.
function Matrix:control(method, path, tbl)
  local id = self.engine:request{ method = method, url = self.url .. "/_emulator" .. path,
    headers = { ["Content-Type"] = "application/json" }, body = tbl and ejson.encode(tbl) or nil,
    timeout = 10, connect_timeout = 5, follow = false }
  while true do
    for _, item in ipairs(self.engine:wait(100)) do
      if item.id == id then
        if not item.ok then error("emulator control " .. path .. ": " .. tostring(item.message)) end
        return cjson.decode(item.body)
      end
    end
  end
end

--- Stops the emulator and removes the scratch directory.
function Matrix:stop()
  if self.emu then self.emu:stop() end
  self.emu = nil
  if self.engine then self.engine:close() end
  self.engine = nil
  os.execute("rm -rf " .. self.dir)
end

local function count_matching(list, method, pattern)
  local n = 0
  for _, r in ipairs(list) do
    if r.method == method and r.path:find(pattern) then n = n + 1 end
  end
  return n
end

--- Runs one case -> row: the case's fields plus recovered, step (where it ended: submit, wait,
-- download or nil), err, task_id, task_status, posts, tasks, fired, leftovers (.part- files),
-- seconds.
function Matrix:run_one(case)
  self:control("POST", "/reset", { progress = "polls", polls = 2, outcome = "success" })
  local routes = M.ROUTES[case.provider]
  local rule = { kind = case.fault.kind, status = case.fault.status, latency_ms = case.fault.latency_ms,
    times = case.mode == "once" and 1 or -1 }
  if case.phase == "download" then
    rule.method, rule.match = "GET", M.DOWNLOAD
  else
    rule.method = case.phase == "submit" and "POST" or "GET"
    rule.match = routes[case.phase]
  end
  self:control("POST", "/faults", rule)

  local o = { api_key = "fault-matrix-key", base_url = self.url, scheduler = scheduler.new() }
  for k, v in pairs(M.SETTINGS) do o[k] = v end
  -- fal follows a waiting task on its status stream; the poll rows are about the polls, so
  -- there the stream is off (its own faults, refused, cut or silent, are spec/stream_spec's).
  if case.provider == "fal" and case.phase == "poll" then o.stream = false end
  local client = vidu.client(case.provider, o)
  local row = { provider = case.provider, phase = case.phase, fault = case.fault.name, mode = case.mode }
  local t0 = core.now()
  local task, err = client:submit{ image = IMAGE, prompt = PROMPT }
  local step = "submit"
  if task then
    row.task_id = task.id
    step = "wait"
    local ok
    ok, err = task:wait{ timeout = M.WAIT_TIMEOUT }
    if ok then
      step = "download"
      ok, err = task:download(self.dir .. "/" .. case.provider .. ".mp4")
      if ok then step = nil end
    end
    row.task_status = task.status
  end
  row.seconds = core.now() - t0
  -- What the download left beside its target: the video when it succeeded, never a part file.
  local ls = io.popen("ls -A " .. self.dir)
  local leftovers = 0
  for name in ls:lines() do
    if name:find("%.part%-") then leftovers = leftovers + 1 end
  end
  ls:close()
  os.execute("rm -f " .. self.dir .. "/*")
  row.leftovers = leftovers
  row.step, row.err, row.recovered = step, err, step == nil
  local log = self:control("GET", "/log").requests
  row.posts = count_matching(log, "POST", routes.submit)
  row.tasks = #self:control("GET", "/tasks").tasks
  local fired = 0
  for _, r in ipairs(self:control("GET", "/faults").faults or {}) do fired = fired + (r.fired or 0) end
  row.fired = fired
  return row
end

--- Runs every case in order -> rows. on_row(row, i, n) is called after each.
function Matrix:run(cases, on_row)
  local rows = {}
  for i, c in ipairs(cases) do
    rows[i] = self:run_one(c)
    if on_row then on_row(rows[i], i, #cases) end
  end
  return rows
end

--- The rules a row must keep -> list of broken ones (strings; empty when all hold).
-- * never two tasks for one submit, and a submit sent twice only after a fault refused it
--   unprocessed (429, 503, reset_before, html_502);
-- * never "failed" for transport trouble (the generation itself succeeds in every row);
-- * every error after a successful submit carries the task's id;
-- * a submit that made a task and still returned an error says may_exist; a persistent submit
--   fault ends in such an error or a clean refusal (no task);
-- * a failed download leaves no .part- file; and the fault fired (the case tested something).
function M.violations(row)
  local v = {}
  local err = row.err
  if row.tasks > 1 then v[#v + 1] = row.tasks .. " tasks created for one submit" end
  if row.posts > 1 and not (row.phase == "submit" and M.NOT_PROCESSED[row.fault]) then
    v[#v + 1] = row.posts .. " submit POSTs after a fault that may have been processed"
  end
  if row.task_status == "failed" then v[#v + 1] = "task.status failed for transport trouble" end
  if err and err.kind == "failed" then v[#v + 1] = "err.kind failed for transport trouble" end
  if row.task_id and err and err.task_id ~= row.task_id then
    v[#v + 1] = "error after submit without the task id (err.task_id " .. tostring(err.task_id) .. ")"
  end
  if row.step == "submit" then
    if row.tasks > 0 and not err.may_exist then
      v[#v + 1] = "submit error without may_exist though a task was created"
    end
  end
  if (row.leftovers or 0) > 0 then v[#v + 1] = row.leftovers .. " .part- files left by the download" end
  if row.fired == 0 then v[#v + 1] = "the fault never fired" end
  return v
end

local function outcome(row)
  if row.recovered then return "recovered" end
  local e = row.err
  local s = row.step .. ": " .. tostring(e and e.kind)
  if e and e.status then s = s .. " " .. e.status end
  if e and e.may_exist then s = s .. " may_exist" end
  return s
end
M.outcome = outcome

--- The rows as a text table: provider, phase, fault, mode, outcome, POSTs, tasks, seconds,
-- and the broken rules of the row (if any).
function M.table(rows)
  local out = { string.format("%-9s %-8s %-14s %-10s %-34s %5s %5s %6s  %s",
    "provider", "phase", "fault", "times", "outcome", "POSTs", "tasks", "s", "rules") }
  for _, r in ipairs(rows) do
    local v = M.violations(r)
    out[#out + 1] = string.format("%-9s %-8s %-14s %-10s %-34s %5d %5d %6.2f  %s",
      r.provider, r.phase, r.fault, r.mode == "once" and "1" or "unlimited", outcome(r), r.posts, r.tasks,
      r.seconds, #v == 0 and "ok" or table.concat(v, "; "))
  end
  return table.concat(out, "\n")
end

--- Totals: rows, recovered, errors by kind, rows that broke a rule, the slowest row.
function M.summary(rows)
  local recovered, broke, kinds, slow, total = 0, 0, {}, nil, 0
  for _, r in ipairs(rows) do
    if r.recovered then recovered = recovered + 1
    else
      local k = tostring(r.err and r.err.kind)
      kinds[k] = (kinds[k] or 0) + 1
    end
    if #M.violations(r) > 0 then broke = broke + 1 end
    if not slow or r.seconds > slow.seconds then slow = r end
    total = total + r.seconds
  end
  local ks = {}
  for k, n in pairs(kinds) do ks[#ks + 1] = k .. " " .. n end
  table.sort(ks)
  local s = string.format("%d rows: %d recovered, %d errors (%s); %d broke a rule; %.1f s in all",
    #rows, recovered, #rows - recovered, table.concat(ks, ", "), broke, total)
  if slow then
    s = s .. string.format("; slowest %.2f s (%s %s %s %s)", slow.seconds, slow.provider, slow.phase,
      slow.fault, slow.mode)
  end
  return s
end

return M
