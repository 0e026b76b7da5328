-- Helpers every spec shares: files, child processes that print their URL, and driving a
-- vidu.core engine until its transfers finish or a deadline passes.
--
--   local util = require("support.util")
--   util.read_file(path) -> bytes (raises, naming the path)
--   util.read_file_if_exists(path) -> bytes | nil
--   util.write_file(path, data); util.write_tmp(data) -> path
--   util.shell_quote(s)
--   util.spawn(cmd, want [, what]) -> child { pid, line, pipe }; child:stop()
--   util.start_server(cmd [, what]) -> child with .url (its first line that starts "http://")
--   util.drive(engine, ids [, seconds]) -> { [id] = item }; util.fetch(engine, req [, seconds])
--   util.luv() -> the one luv module of the run
local M = {}

--- The whole file at path; raises naming the path when it cannot be opened.
function M.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then error(err, 2) end
  local data = f:read("*a")
  f:close()
  return data
end

--- The whole file at path, or nil when it cannot be opened (e.g. it does not exist).
function M.read_file_if_exists(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

--- Writes data to path, replacing the file.
function M.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

--- Writes data to a new temporary file; returns its path (the caller removes it).
function M.write_tmp(data)
  local path = os.tmpname()
  M.write_file(path, data)
  return path
end

-- Child processes come from the library's own launcher (vidu.launch), which the
-- demo and the benchmarks use too.
local launch = require("vidu.launch")
M.shell_quote = launch.shell_quote
M.spawn = launch.spawn
M.start_server = launch.start_server

-- busted unloads the modules a spec file loaded before the next file runs. luv keeps its event
-- loop in its module table (field _loop), so an unloaded luv frees the loop while the next
-- file's luv still uses it (a crash in uv_tcp_init). Keep the first luv module alive for the
-- whole process: every spec that uses luv in-process gets it from here.
local PIN = "lua-vidu.spec.pinned-luv"

--- The luv module, the same one for the whole run.
function M.luv()
  local reg = debug.getregistry()
  local uv = reg[PIN]
  if not uv then
    uv = require("luv")
    reg[PIN] = uv
  end
  return uv
end

local function now()
  return require("vidu.core").now()
end

--- Drives engine until every id in ids has finished; returns the finished items by id.
-- Raises when `seconds` (default 90: generous, for valgrind) pass first.
function M.drive(engine, ids, seconds)
  local want, left, results = {}, 0, {}
  for _, id in ipairs(ids) do
    want[id] = true
    left = left + 1
  end
  local deadline = now() + (seconds or 90)
  while left > 0 do
    if now() > deadline then
      error(("deadline passed with %d of %d transfers unfinished"):format(left, #ids), 2)
    end
    for _, r in ipairs(engine:wait(50)) do
      if want[r.id] then
        results[r.id] = r
        want[r.id] = nil
        left = left - 1
      end
    end
  end
  return results
end

--- One request (engine:request's table), driven to its end -> the finished item.
function M.fetch(engine, req, seconds)
  local id = engine:request(req)
  return M.drive(engine, { id }, seconds)[id]
end

return M
