--- Batched polls for Vidu's official API: the polls of one client's tasks that fall due
-- close together go out as one GET /ent/v2/tasks?task_ids[]=...&pager.pagesz=N
-- (platform.vidu.com/docs/tasks-list; at most 100 ids a page) instead of one GET
-- .../creations each.
--
-- A poll joins the client's open batch (or opens one) and waits for its answer; the batch is
-- sent `window` seconds after it opened (or at once when it holds 100 ids) by a coroutine of
-- its own, so no waiter's deadline cuts it short for the others. Each task's entry is read
-- with the driver's pure `read` and handed back to Task:refresh, which applies it: this
-- module changes no task. Never lose a task, never stall a wait:
--   * a task missing from the answer, or whose entry has no state (the page does not confirm
--     that entries carry one), is polled on its own GET at once; an answer none of whose
--     entries has a state turns batching off for the client;
--   * a list that answers 404, 405, 400 or 501, or a 2xx that is not { tasks = [...] },
--     turns batching off for the client for good (the server has no such list): every poll
--     then goes on its own, this one too;
--   * any other failure (network, 5xx, 429 after the retries) sends this batch's polls on
--     their own; three such batches in a row turn batching off too;
--   * a waiter whose deadline (task:wait's timeout) passes before the batch answers stops
--     waiting and polls on its own, which the deadline then cuts at once.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local common = require("vidu.providers.common")
local url = require("vidu.url")

local tab = common.tab

local batch = {}

-- Vidu's page size limit.
batch.MAX_IDS = 100
-- How long a batch stays open for more polls to join, by default (seconds).
batch.WINDOW = 0.05
-- Pages followed for one batch at most (a server that pages below our pagesz).
local MAX_PAGES = 100
-- Batches in a row that fail with a transient error before batching is turned off.
local MAX_FAILURES = 3
-- Statuses that say the server has no such list (or does not take our query).
local ABSENT = { [400] = true, [404] = true, [405] = true, [501] = true }
-- How long one sleep of a waiter without a deadline lasts (it loops until the batch answers).
local LONG = 3600

local Batcher = {}
Batcher.__index = Batcher

--- A batcher for one client. opts: path (the list path, "/ent/v2/tasks"), read (the driver's
-- task answer reader), single (function(client, task) -> observation | nil, err: the poll of
-- one task), window (seconds a batch stays open).
function batch.new(client, opts)
  return setmetatable({
    client = client, path = opts.path, read = opts.read, single = opts.single,
    window = opts.window or batch.WINDOW, off = false, failures = 0, open = nil,
    -- Counters, for specs and benchmarks: list requests sent, polls they answered, polls
    -- that went on their own (fallbacks).
    lists = 0, answered = 0, fallbacks = 0,
  }, Batcher)
end

-- The query of one page: every id as task_ids[] (brackets percent-encoded), the page size,
-- and the page token after the first page.
local function query(ids, token)
  local parts = {}
  for i = 1, #ids do parts[i] = "task_ids%5B%5D=" .. url.encode(ids[i]) end
  parts[#parts + 1] = "pager.pagesz=" .. #ids
  if token then parts[#parts + 1] = "pager.page_token=" .. url.encode(token) end
  return table.concat(parts, "&")
end

-- Turns batching off for the client, saying why in the client's log.
function Batcher:_disable(why)
  if self.off then return end
  self.off = true
  local log = self.client._log
  if log then
    log("info", string.format("%s: the task list %s: polling each task on its own",
      self.client.provider, why))
  end
end

-- Sends one batch (page after page) and fills b.results (id -> observation). Runs in a
-- coroutine of its own.
function Batcher:_send(b)
  local client = self.client
  local ids = b.ids
  local token, pages = nil, 0
  while true do
    pages = pages + 1
    self.lists = self.lists + 1
    local resp, err = client:request{
      method = "GET", path = self.path .. "?" .. query(ids, token), idempotent = true,
    }
    if not resp then
      local status = type(err) == "table" and err.status
      if ABSENT[status] then
        self:_disable("answered HTTP " .. tostring(status))
      else
        self.failures = self.failures + 1
        if self.failures >= MAX_FAILURES then
          self:_disable("failed " .. MAX_FAILURES .. " times in a row")
        end
      end
      return
    end
    local j = tab(resp.json)
    local list = j and tab(j.tasks)
    if not list then
      self:_disable("answered without a tasks list")
      return
    end
    self.failures = 0
    local ours, stated = 0, 0
    for i = 1, #list do
      local e = tab(list[i])
      local id = e and (common.id(e.id) or common.id(e.task_id))
      if id and b.tasks[id] then
        ours = ours + 1
        local obs = common.str(e.state) and self.read(e)
        if obs then
          stated = stated + 1
          b.results[id] = obs
          self.answered = self.answered + 1
        end
      end
    end
    if ours > 0 and stated == 0 then
      -- Entries without a state cannot stand for a poll: every one would be polled again.
      self:_disable("lists tasks without their state")
      return
    end
    token = common.str(j.next_page_token)
    if not token or pages >= MAX_PAGES or #list == 0 then return end
  end
end

-- The life of one batch: open for `window` (or until full), then sent; its waiters wake,
-- whatever went wrong (they then poll on their own).
function Batcher:_run(b)
  local sched = self.client.scheduler
  if not b.full then sched:sleep(self.window, b.go) end
  if self.open == b then self.open = nil end
  if not self.off then
    local ok, err = sched:pcall(self._send, self, b)
    if not ok then self:_disable("raised " .. tostring(err)) end
  end
  sched:signal(b.done)
end

--- Polls `task` through the open batch: observation | nil, err (as the driver's poll).
function Batcher:poll(task)
  local client = self.client
  if self.off then return self.single(client, task) end
  local sched = client.scheduler
  local id = task.id
  local b = self.open
  if not b then
    b = { ids = {}, tasks = {}, results = {}, go = sched:event(), done = sched:event() }
    self.open = b
    sched:spawn(self._run, self, b)
  end
  if not b.tasks[id] then
    b.tasks[id] = true
    b.ids[#b.ids + 1] = id
    if #b.ids >= batch.MAX_IDS then
      b.full = true
      self.open = nil
      sched:signal(b.go)
    end
  end
  local deadline = client:_deadline()
  while not b.done.fired do
    local left = deadline and deadline - sched:time() or LONG
    if left <= 0 then break end
    sched:sleep(left, b.done)
  end
  local obs = b.results[id]
  if obs then return obs end
  self.fallbacks = self.fallbacks + 1
  return self.single(client, task)
end

return batch
