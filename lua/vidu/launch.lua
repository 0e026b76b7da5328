--- Runs the emulator (or any server that prints its URL first) as a child process, from plain
-- Lua: no luv needed, so a pipeline script, the demo, a benchmark or a spec can start one.
--
--   local launch = require("vidu.launch")
--   local emu = launch.start{ config = { progress = "time", seconds = 10 } }
--   local client = vidu.client("vidu", { api_key = "any", base_url = emu.url })
--   ...
--   emu:stop()
--
-- The child is started by a shell that prints its own pid and then execs the command, so the
-- pid is the child's. stop() sends TERM, then KILL if it has not gone within 3 s, and reaps it;
-- a child nobody stopped is stopped when its handle is collected, so a failing caller cannot
-- leave a pipe whose close waits forever.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local core = require("vidu.core")
local json = require("vidu.json")

local launch = {}

--- s as one shell word.
function launch.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Sleeps ms milliseconds: an idle engine's wait sleeps in curl_multi_poll.
local napper
local function nap(ms)
  napper = napper or core.engine{}
  napper:wait(ms)
end

-- Is the process running? (a zombie waiting to be reaped counts as gone)
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if f then
    local stat = f:read("*l") or ""
    f:close()
    return stat:match("^%d+ %b() (%a)") ~= "Z"
  end
  local a, _, c = os.execute("kill -0 " .. pid .. " 2>/dev/null")
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

local Child = {}
Child.__index = Child

--- Stops the child and reaps it: TERM, then KILL if it has not gone within 3 s. Safe to call
-- twice. (Closing the pipe first would wait forever for a child that was not told to go.)
function Child:stop()
  if not self.pipe then return end
  local pid = self.pid
  os.execute("kill -TERM " .. pid .. " 2>/dev/null")
  local deadline = core.now() + 3
  while core.now() < deadline and alive(pid) do nap(20) end
  if alive(pid) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
  self.pipe:close()
  self.pipe = nil
end

Child.__gc = function(self) self:stop() end

--- Runs a shell command as a child with a known pid and reads its stdout until a line matches
-- the pattern `want`. Returns the child { pid, line, pipe, stop }. Raises, naming `what`
-- (default the command) and the last line read, if the child ends first.
function launch.spawn(cmd, want, what)
  local pipe = assert(io.popen("echo $$; exec " .. cmd, "r"))
  local pid = tonumber(pipe:read("*l") or "")
  local line, last
  repeat
    last = line or last
    line = pipe:read("*l")
  until line == nil or line:match(want)
  local child = setmetatable({ pid = pid, pipe = pipe, line = line }, Child)
  if newproxy then -- Lua 5.1/LuaJIT: tables have no __gc
    child.gc_proxy = newproxy(true)
    getmetatable(child.gc_proxy).__gc = function() child:stop() end
  end
  if not pid or not line then
    if pid then child:stop() else pipe:close() end
    error((what or cmd) .. " did not print a line matching " .. want ..
      " (last line: " .. tostring(last) .. ")", 2)
  end
  return child
end

--- Starts a server that prints its URL ("http://...") first; the child gets .url.
function launch.start_server(cmd, what)
  local child = launch.spawn(cmd, "^http://", what)
  child.url = child.line
  return child
end

-- The emulator script of this source tree (lua/vidu/emulator/ -> bin/), or nil when this
-- module was installed elsewhere (a rock puts `vidu-emulator` on the PATH instead). A module
-- loaded by the relative path lua/vidu/emulator/... is in the tree of the current directory.
local function tree_script()
  local src = debug.getinfo(1, "S").source
  local dir = src:match("^@(.*)/lua/vidu/[^/]*$")
  if not dir and src:match("^@lua/vidu/[^/]*$") then dir = "." end
  if not dir then return nil end
  local path = dir .. "/bin/vidu-emulator"
  local f = io.open(path, "rb")
  if not f then return nil end
  f:close()
  return path
end

--- Starts bin/vidu-emulator on a free loopback port and returns the child, with .url.
-- opts: lua (interpreter for the script; default $VIDU_LUA or lua5.4), seed (default 1),
-- config (a table, written to a JSON file for --config), args (more command-line words).
-- The emulator exits with this process (--exit-with-parent) even if stop() is never called.
function launch.start(opts)
  opts = opts or {}
  local argv = {}
  local script = tree_script()
  if script then
    argv[1] = opts.lua or os.getenv("VIDU_LUA") or "lua5.4"
    argv[2] = script
  else
    argv[1] = "vidu-emulator"
  end
  for _, a in ipairs({ "--port", "0", "--seed", tostring(opts.seed or 1), "--exit-with-parent" }) do
    argv[#argv + 1] = a
  end
  local config_path
  if opts.config then
    config_path = os.tmpname()
    local f = assert(io.open(config_path, "wb"))
    f:write(json.encode(opts.config))
    f:close()
    argv[#argv + 1] = "--config"
    argv[#argv + 1] = config_path
  end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = tostring(a) end
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = launch.shell_quote(a) end
  local ok, child = pcall(launch.start_server, table.concat(quoted, " "), "the emulator")
  if config_path then os.remove(config_path) end
  if not ok then error(child, 2) end
  return child
end

return launch
