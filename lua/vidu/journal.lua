--- vidu.journal: a durable, append-only record of paid work, written through a client's events.
--
--   local journal = require("vidu.journal")
--   local j = assert(journal.open("runs/journal.jsonl"))
--   local client = vidu.client("vidu", { on_event = j:hook() })  -- or j:attach(client)
--   -- ... after a crash, in a fresh process:
--   local summary = j:resume{ client = function(provider) return clients[provider] end }
--
-- One JSON object per line, each written with core.append_sync (O_APPEND, fsync, close), so
-- a line is on disk before the code that caused it goes on:
--
--   open        a process opened the journal                       { pid }
--   intent      `submitting`: before any byte of a paid submit      { key, provider, params, meta }
--   submitted   the provider's task id is known                     { key, provider, handle }
--   error       the submit failed (error.may_exist: a task may exist anyway)
--   status      the task's status changed (queued/running/terminal) { key, id, status, video_url,
--               cover_url, cost, error }
--   downloaded  the video is in place                               { key, id, path }
--   forget      the user says a "may exist" submit made no task     { key }
--
-- Every record has `type` and `at` (Unix seconds). A record's `key` names the work: a hash of
-- the provider and the normalised parameters (journal.key), so the same generation asked
-- again is recognised and not paid twice. Loading folds the lines into one entry per key; a
-- line that does not parse (a torn last line after a crash, or a fragment a torn line left
-- behind) is skipped and listed in j.problems.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local files = require("vidu.files")
local dirname, file_exists = files.dirname, files.exists
local core = require("vidu.core")
local json = require("vidu.json")

local journal = {}

local Journal = {}
Journal.__index = Journal

-- Journals open in this process, by path: two clients given the same path share one.
local open_journals = {}

-- Parameters that change how or where an answer travels, not what is generated: left out
-- of the key, so re-running with another webhook or upload route still finds the work.
local NOT_IN_KEY = {
  upload = true, sync = true, priority = true, start_timeout = true, hint = true,
  callback_url = true, webhook = true, fal_webhook = true,
}

local TERMINAL = { succeeded = true, failed = true, canceled = true }

local cwd_cache
local function cwd()
  if not cwd_cache then
    cwd_cache = os.getenv("PWD")
    if not cwd_cache or cwd_cache:sub(1, 1) ~= "/" then
      local p = io.popen("pwd")
      cwd_cache = p and p:read("*l") or "."
      if p then p:close() end
    end
  end
  return cwd_cache
end

--- The absolute form of a local path (relative paths are taken from the working directory).
function journal.abspath(path)
  if path:sub(1, 1) == "/" then return path end
  if path == "." then return cwd() end
  path = path:gsub("^%./", "")
  return cwd() .. "/" .. path
end

-- Two polynomial hashes over the bytes (moduli just below 2^32), 16 hex digits together.
-- Not cryptographic: a name for a set of parameters, stable across Lua versions.
local P1, P2 = 4294967291, 4294967279
local function hash(s)
  local h1, h2 = 5381, 52711
  local n = #s
  for i = 1, n, 64 do
    local bytes = { s:byte(i, i + 63 < n and i + 63 or n) }
    for j = 1, #bytes do
      local b = bytes[j]
      h1 = (h1 * 257 + b + 1) % P1
      h2 = (h2 * 263 + b + 7) % P2
    end
  end
  return string.format("%08x%08x", h1, h2)
end
journal.hash = hash

-- What identifies an image descriptor (vidu.images) without its bytes.
local function image_identity(img)
  if type(img) ~= "table" then return img end
  if img.source == "url" then return { url = img.url } end
  if img.source == "file" then
    return { path = journal.abspath(img.path), size = img.size, width = img.width,
      height = img.height, format = img.format }
  end
  if img.bytes then
    return { bytes_hash = hash(img.bytes), size = img.size, width = img.width,
      height = img.height, format = img.format }
  end
  return { size = img.size, format = img.format }
end

--- The checked parameters (client:check's answer, or a submitting event's params) as a
-- plain JSON-able table for the journal: the image by its identity, never its bytes.
function journal.describe_params(params)
  local out = {}
  for k, v in pairs(params) do
    if k == "image" then
      out.image = image_identity(v)
    elseif type(v) ~= "function" and type(v) ~= "userdata" then
      out[k] = v
    end
  end
  return out
end

--- The stable key of a generation: a hash of the provider and the normalised parameters
-- (client:check's answer: model filled in, the image by path and size, URL, or a hash of its
-- bytes), leaving out what only changes how the answer travels (webhooks, upload route).
function journal.key(provider, params)
  if type(provider) ~= "string" or type(params) ~= "table" then
    error("journal.key expects a provider name and a table of checked parameters", 2)
  end
  local p = journal.describe_params(params)
  for k in pairs(NOT_IN_KEY) do p[k] = nil end
  return hash(json.encode({ provider = provider, params = p }))
end

-- An error value as a plain record (no metatable, no cause chain).
local function error_record(e)
  if type(e) ~= "table" then return e ~= nil and { message = tostring(e) } or nil end
  return {
    kind = e.kind, message = e.message ~= nil and tostring(e.message) or nil, code = e.code,
    status = e.status, may_exist = e.may_exist, task_id = e.task_id,
  }
end

---------------------------------------------------------------------------------------------
-- Folding records into entries

-- entry.state: "may_exist" (an intent with no answer: the submit may have made a task),
-- "rejected" (the submit failed and made nothing: safe to send again), "queued", "running",
-- "succeeded", "failed", "canceled". entry.path is set once the video was downloaded.
local function new_entry(self, key, provider)
  local e = { key = key, provider = provider, state = "may_exist", attempts = 0 }
  self.by_key[key] = e
  self.order[#self.order + 1] = e
  return e
end

local function index_id(self, e)
  if e.provider and e.id then self.by_id[e.provider .. "\0" .. e.id] = e end
end

-- Applies one record to the entries; returns the entry it touched (or nil).
local function fold(self, rec)
  local t, key = rec.type, rec.key
  if t == "open" then
    self.sessions = self.sessions + 1
    return nil
  end
  if type(key) ~= "string" then return nil end
  local e = self.by_key[key]
  if t == "intent" then
    e = e or new_entry(self, key, rec.provider)
    -- A new attempt (only ever after a rejected or forgotten one): start afresh.
    e.provider, e.params, e.meta = rec.provider, rec.params, rec.meta or e.meta
    e.attempts = e.attempts + 1
    e.state, e.handle, e.id, e.status, e.error = "may_exist", nil, nil, nil, nil
    e.video_url, e.cover_url, e.cost, e.path = nil, nil, nil, nil
    e.submitted_at = rec.at
    return e
  end
  e = e or new_entry(self, key, rec.provider)
  if rec.provider then e.provider = e.provider or rec.provider end
  if t == "submitted" then
    e.handle = rec.handle
    e.id = rec.handle and rec.handle.id
    e.status, e.state, e.error = "queued", "queued", nil
    index_id(self, e)
  elseif t == "error" then
    local err = rec.error or {}
    e.error = err
    if err.may_exist and err.task_id then
      -- The id is known: re-attachable like any submitted task.
      e.id = tostring(err.task_id)
      e.handle = { provider = e.provider, id = e.id }
      e.status, e.state = "queued", "queued"
      index_id(self, e)
    elseif err.may_exist then
      e.state = "may_exist"
    else
      e.state = "rejected"
    end
  elseif t == "status" then
    if rec.id and not e.id then
      e.id = rec.id
      e.handle = e.handle or { provider = e.provider, id = rec.id }
      index_id(self, e)
    end
    if not TERMINAL[e.status] then
      e.status = rec.status or e.status
      e.state = e.status
    end
    if rec.video_url then e.video_url = rec.video_url end
    if rec.cover_url then e.cover_url = rec.cover_url end
    if rec.cost ~= nil then e.cost = rec.cost end
    if rec.error then e.error = rec.error end
    e.finished_at = TERMINAL[e.status] and (e.finished_at or rec.at) or nil
  elseif t == "downloaded" then
    e.path = rec.path
  elseif t == "forget" then
    if e.state == "may_exist" then e.state = "rejected" end
    e.forgotten = true
  end
  return e
end

---------------------------------------------------------------------------------------------
-- Opening and writing

local function split_lines(text)
  local lines, pos = {}, 1
  while pos <= #text do
    local nl = text:find("\n", pos, true)
    if not nl then
      lines[#lines + 1] = { text = text:sub(pos), complete = false }
      break
    end
    lines[#lines + 1] = { text = text:sub(pos, nl - 1), complete = true }
    pos = nl + 1
  end
  return lines
end

--- Opens (or creates) the journal at `path` and loads what it holds: Journal | nil, err.
-- Opening writes an `open` record at once, so a journal that cannot be written is reported
-- here and not at the first paid submit. The same path opened twice in one process gives the
-- same object. opts: readonly (load only: no record written; a missing file is an empty
-- journal), pid (kept in the open record). j.problems lists the lines that were skipped:
-- { line, reason = "torn" (the last line, cut short) | "corrupt", bytes }.
function journal.open(path, opts)
  if type(path) ~= "string" or path == "" then error("journal.open expects a file path", 2) end
  opts = opts or {}
  local abs = journal.abspath(path)
  local existing = open_journals[abs]
  if existing then return existing end

  local self = setmetatable({
    path = path, by_key = {}, by_id = {}, order = {}, problems = {}, sessions = 0,
    pkeys = setmetatable({}, { __mode = "k" }), tkeys = setmetatable({}, { __mode = "k" }),
    last_status = setmetatable({}, { __mode = "k" }),
  }, Journal)

  local f = io.open(path, "rb")
  local text = ""
  if f then
    text = f:read("*a") or ""
    f:close()
  end
  local lines = split_lines(text)
  for i, l in ipairs(lines) do
    if l.text:match("%S") then
      local rec = json.decode(l.text)
      if type(rec) == "table" and type(rec.type) == "string" then
        fold(self, rec)
      else
        self.problems[#self.problems + 1] = {
          line = i, bytes = #l.text,
          reason = (i == #lines and not l.complete) and "torn" or "corrupt",
        }
      end
    end
  end
  -- A torn last line has no newline: the next record must start on a line of its own.
  self.needs_newline = #text > 0 and text:sub(-1) ~= "\n"

  if opts.readonly then
    -- For reading only (vidu status, a dry run): nothing written, not shared.
    self.readonly = true
    return self
  end
  local ok, err = self:record{ type = "open", pid = opts.pid }
  if not ok then return nil, err end
  open_journals[abs] = self
  return self
end

--- Appends one record (a table with `type`; `at` is added) durably, and folds it into the
-- entries: true | nil, err.
function Journal:record(rec)
  if type(rec) ~= "table" or type(rec.type) ~= "string" then
    error("journal:record expects a table with a type", 2)
  end
  if self.readonly then error("journal:record: " .. self.path .. " was opened read-only", 2) end
  rec.at = rec.at or os.time()
  local line = json.encode(rec) .. "\n"
  if self.needs_newline then line = "\n" .. line end
  local ok, err = core.append_sync(self.path, line)
  if not ok then
    -- Part of the line may have reached the file: start the next one on a fresh line.
    self.needs_newline = true
    return nil, "vidu.journal: " .. tostring(err)
  end
  self.needs_newline = false
  fold(self, rec)
  return true
end

-- A record that must reach the disk before anything else happens: raises when it cannot
-- (going on would risk paid work that nothing remembers).
function Journal:_must(rec, what)
  local ok, err = self:record(rec)
  if not ok then error(err .. " (while recording " .. what .. ")", 0) end
end

---------------------------------------------------------------------------------------------
-- Reading

--- The entry of a key, or nil.
function Journal:entry(key)
  return self.by_key[key]
end

--- The entry of a provider's task id, or nil.
function Journal:find_task(provider, id)
  return self.by_id[tostring(provider) .. "\0" .. tostring(id)]
end

--- Every entry, in the order their work was first asked for.
function Journal:entries()
  local out = {}
  for i, e in ipairs(self.order) do out[i] = e end
  return out
end

--- True when the journal holds work for `key` that must not be sent again: anything but
-- a submit that was rejected (made nothing) or that the user forgot.
function Journal:holds(key)
  local e = self.by_key[key]
  return e ~= nil and e.state ~= "rejected"
end

--- The entries whose key starts with `prefix` (a short form, as `vidu status` prints).
function Journal:match(prefix)
  local out = {}
  for _, e in ipairs(self.order) do
    if e.key:sub(1, #prefix) == prefix or e.id == prefix then out[#out + 1] = e end
  end
  return out
end

---------------------------------------------------------------------------------------------
-- Writing through events

-- The key an event belongs to: the hook's own (a per-submit hook), else what the event's
-- params or task were seen with.
local function key_of(self, ev, st)
  if st and st.key then return st.key end
  if ev.params then
    local k = self.pkeys[ev.params]
    if not k then
      k = journal.key(ev.provider, ev.params)
      self.pkeys[ev.params] = k
    end
    return k
  end
  if ev.task then
    local k = self.tkeys[ev.task]
    if k then return k end
    local e = self:find_task(ev.provider, ev.task.id)
    if e then return e.key end
    return "task:" .. tostring(ev.provider) .. ":" .. tostring(ev.task.id)
  end
  return nil
end

function Journal:_on_event(ev, meta, st)
  local t = ev.type
  if t == "submitting" then
    local k = key_of(self, ev, nil)
    if st then st.key = k end
    self:_must({ type = "intent", key = k, provider = ev.provider,
      params = journal.describe_params(ev.params), meta = meta }, "the intent of a submit")
  elseif t == "submitted" then
    local k = key_of(self, ev, st)
    self.tkeys[ev.task] = k
    self.last_status[ev.task] = ev.task.status
    self:_must({ type = "submitted", key = k, provider = ev.provider, handle = ev.handle },
      "task " .. tostring(ev.handle and ev.handle.id) .. " of " .. tostring(ev.provider))
  elseif t == "error" then
    self:_must({ type = "error", key = key_of(self, ev, st), provider = ev.provider,
      error = error_record(ev.error) }, "a submit's error")
  elseif t == "updated" or t == "finished" then
    local task = ev.task
    local k = key_of(self, ev, st)
    self.tkeys[task] = k
    local before = self.last_status[task]
    if before == nil then
      local e = self.by_key[k]
      before = e and e.status
    end
    if t == "finished" or ev.status ~= before then
      self.last_status[task] = ev.status
      local rec = { type = "status", key = k, provider = ev.provider, id = task.id,
        status = ev.status }
      if t == "finished" then
        rec.video_url, rec.cover_url, rec.cost = task.video_url, task.cover_url, task.cost
        rec.error = error_record(ev.error)
      end
      self:_must(rec, "task " .. tostring(task.id) .. " " .. tostring(ev.status))
    end
  elseif t == "downloaded" then
    self:_must({ type = "downloaded", key = key_of(self, ev, st), provider = ev.provider,
      id = ev.task and ev.task.id, path = ev.path }, "a download")
  end
end

--- An on_event hook that journals every event it gets. For one submit (client:submit's
-- opts.on_event) or one re-attach, `meta` (any JSON-able table: a batch item's axes, its
-- output file) goes into the intent record and `key` names the work when it is already
-- known (a re-attach). As a client's on_event it follows all of that client's tasks.
-- A record that cannot be written raises: a paid submit must not go on unrecorded.
function Journal:hook(meta, key)
  local st = (meta ~= nil or key ~= nil) and { key = key } or nil
  return function(ev) self:_on_event(ev, meta, st) end
end

--- Journals every task of `client` from now on, before the client's own on_event (if any)
-- sees each event. Returns the client.
function Journal:attach(client)
  local prev = client.on_event
  client.on_event = function(ev)
    self:_on_event(ev, nil, nil)
    if prev then prev(ev) end
  end
  return client
end

--- Records that a "may exist" submit made no task after all (the user checked): its work
-- may be sent again. true | nil, err.
function Journal:forget(key)
  return self:record{ type = "forget", key = key }
end

--- Records that a "may exist" submit did make task `id` (the user found it): resume then
-- re-attaches it. true | nil, err.
function Journal:adopt(key, id, extra)
  local e = self.by_key[key]
  local handle = { provider = e and e.provider, id = tostring(id) }
  for k, v in pairs(extra or {}) do handle[k] = v end
  return self:record{ type = "submitted", key = key, provider = handle.provider, handle = handle }
end

--- Calls every non-nil function given with the same arguments: hooks in a row.
function journal.chain(...)
  local fns = {}
  for i = 1, select("#", ...) do
    local f = select(i, ...)
    if f then fns[#fns + 1] = f end
  end
  return function(...)
    for _, f in ipairs(fns) do f(...) end
  end
end

---------------------------------------------------------------------------------------------
-- Resume

--- Where an entry's video goes: meta.out as given, or meta.file relative to the journal's
-- directory (a batch's videos/), or nil.
function Journal:target(e)
  local m = e.meta
  if type(m) ~= "table" then return nil end
  if type(m.out) == "string" then return m.out end
  if type(m.file) == "string" then return dirname(self.path) .. "/" .. m.file end
  return nil
end

--- What resume would do with an entry: "attach" (unfinished), "download" (finished, video
-- not in place), "may_exist", or nil (nothing to do).
function Journal:plan_for(e, target)
  target = target or self:target(e)
  local s = e.state
  if s == "queued" or s == "running" then return "attach" end
  if s == "may_exist" then return "may_exist" end
  -- A video is only ever renamed into place complete: a file at the target is the video.
  if s == "succeeded" and target and not file_exists(target) then
    return "download"
  end
  return nil
end

--- Re-attaches every unfinished task and downloads what finished; a submit whose answer was
-- lost is listed, never sent again. Runs the work concurrently (vidu.gather) and returns
-- { attached, downloaded, succeeded, failed, may_exist = { entries }, errors = { {entry, err} } }.
-- opts: client = function(provider) -> client (required); target = function(entry) -> path
-- (default journal:target); on_event (a display hook, after the journal's); timeout (per
-- wait, s); concurrency (default 8); only = function(entry) -> bool (a filter).
function Journal:resume(opts)
  if type(opts) ~= "table" or type(opts.client) ~= "function" then
    error("journal:resume expects { client = function(provider) -> client }", 2)
  end
  local vidu = require("vidu")
  local summary = { attached = 0, downloaded = 0, succeeded = 0, failed = 0, may_exist = {},
    errors = {} }
  local jobs = {}
  local sem = vidu.scheduler():semaphore(opts.concurrency or 8)
  for _, e in ipairs(self.order) do
    local target = (opts.target or function(x) return self:target(x) end)(e)
    local what = (not opts.only or opts.only(e)) and self:plan_for(e, target) or nil
    if what == "may_exist" then
      summary.may_exist[#summary.may_exist + 1] = e
    elseif what then
      jobs[#jobs + 1] = function()
        -- A client that cannot be made (no key) is this entry's error, not a stuck slot.
        local okc, client = pcall(opts.client, e.provider)
        if not okc then
          summary.errors[#summary.errors + 1] = { entry = e, err = client }
          return
        end
        sem:acquire()
        local task, err = client:task(e.handle,
          { on_event = journal.chain(self:hook(nil, e.key), opts.on_event) })
        if task then
          summary.attached = summary.attached + 1
          local ok
          ok, err = task:wait{ timeout = opts.timeout }
          if ok then
            summary.succeeded = summary.succeeded + 1
            if target then
              ok, err = task:download(target)
              if ok then summary.downloaded = summary.downloaded + 1 end
            end
          elseif task:done() then
            summary.failed = summary.failed + 1
            err = nil
          end
        end
        if err then summary.errors[#summary.errors + 1] = { entry = e, err = err } end
        sem:release()
      end
    end
  end
  if #jobs > 0 then vidu.gather(jobs) end
  return summary
end

return journal
