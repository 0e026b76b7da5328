--- Run a child process on the luv loop without blocking: feed stdin, collect stdout/stderr,
-- and (opts.timeout) kill it when it runs longer than allowed.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local uv = require("luv")

local M = {}

local Child = {}
Child.__index = Child

--- Kills the child at once (SIGKILL) if it is still running; its callback still runs, with the
-- code of a killed process. Safe to call twice or after it exited.
function Child:kill()
  local h = self.handle
  if h and not self.exited and not h:is_closing() then
    self.killed = true
    pcall(h.kill, h, "sigkill")
  end
end

--- Is it still running?
function Child:running()
  return not self.exited
end

--- Run `cmd` with `args` (array). opts.input (string) goes to stdin; opts.cwd; opts.timeout
-- (seconds): past it the child is killed and its stderr says so.
-- cb(code, stdout, stderr) runs when the process has exited and its pipes are drained; a
-- child ended by a signal gets code 128 + the signal's number, as a shell reports it.
-- Returns the child { pid, kill(), running() }, or nil, err when the process could not be
-- started (cb is then not called).
function M.run(cmd, args, opts, cb)
  opts = opts or {}
  local stdin, stdout, stderr = uv.new_pipe(false), uv.new_pipe(false), uv.new_pipe(false)
  local out, err = {}, {}
  local pending = 3 -- exit + two EOFs
  local code
  local child = setmetatable({}, Child)
  local timer
  local function maybe_done()
    pending = pending - 1
    if pending == 0 and cb then
      if child.timed_out then
        err[#err + 1] = string.format("killed after the time limit of %g s", opts.timeout)
      end
      cb(code, table.concat(out), table.concat(err))
    end
  end
  local handle, perr
  handle, perr = uv.spawn(cmd, { args = args, stdio = { stdin, stdout, stderr }, cwd = opts.cwd },
    function(c, signal)
      child.exited = true
      code = (signal and signal ~= 0) and 128 + signal or c
      if timer and not timer:is_closing() then timer:close() end
      if handle and not handle:is_closing() then handle:close() end
      maybe_done()
    end)
  if not handle then
    stdin:close(); stdout:close(); stderr:close()
    return nil, tostring(perr)
  end
  child.handle, child.pid = handle, handle:get_pid()
  if opts.timeout and opts.timeout > 0 then
    timer = uv.new_timer()
    timer:start(math.floor(opts.timeout * 1000), 0, function()
      timer:close()
      if not child.exited then
        child.timed_out = true
        child:kill()
      end
    end)
  end
  local function reader(buf)
    return function(e, data)
      if data then
        buf[#buf + 1] = data
      else
        if e then buf[#buf + 1] = "" end
        return true
      end
    end
  end
  local rout, rerr = reader(out), reader(err)
  stdout:read_start(function(e, data)
    if rout(e, data) then stdout:close(); maybe_done() end
  end)
  stderr:read_start(function(e, data)
    if rerr(e, data) then stderr:close(); maybe_done() end
  end)
  if opts.input and opts.input ~= "" then
    stdin:write(opts.input)
  end
  stdin:shutdown(function() stdin:close() end)
  return child
end

local found = {}
--- Is an executable on PATH? (checked once per name, synchronously; used at start-up)
function M.which(name)
  if found[name] == nil then
    local path = os.getenv("PATH") or "/usr/bin:/bin"
    found[name] = false
    for dir in path:gmatch("[^:]+") do
      local p = dir .. "/" .. name
      if uv.fs_access(p, "X") then found[name] = p; break end
    end
  end
  return found[name] or nil
end

return M
