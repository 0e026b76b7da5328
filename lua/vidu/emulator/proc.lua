--- Run a child process on the luv loop without blocking: feed stdin, collect stdout/stderr.
local uv = require("luv")

local M = {}

--- Run `cmd` with `args` (array). opts.input (string) goes to stdin.
-- cb(code, stdout, stderr) runs when the process has exited and its pipes are drained.
-- Returns true, or nil, err when the process could not be started (cb is then not called).
function M.run(cmd, args, opts, cb)
  opts = opts or {}
  local stdin, stdout, stderr = uv.new_pipe(false), uv.new_pipe(false), uv.new_pipe(false)
  local out, err = {}, {}
  local pending = 3 -- exit + two EOFs
  local code
  local function maybe_done()
    pending = pending - 1
    if pending == 0 and cb then cb(code, table.concat(out), table.concat(err)) end
  end
  local handle, perr
  handle, perr = uv.spawn(cmd, { args = args, stdio = { stdin, stdout, stderr }, cwd = opts.cwd },
    function(c)
      code = c
      if handle and not handle:is_closing() then handle:close() end
      maybe_done()
    end)
  if not handle then
    stdin:close(); stdout:close(); stderr:close()
    return nil, tostring(perr)
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
  return true
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
