-- Starts spec/support/testserver.lua as a child process and stops it again.
--
--   local testserver = require("support.testserver_process")
--   local srv = testserver.start()   -- srv.url = "http://127.0.0.1:PORT", srv.pid
--   srv:stop()                        -- kills it and reaps it; safe to call twice
--
-- The child runs with $VIDU_LUA (the interpreter the Makefile names), falling back to lua5.4.
--
--   local proc = testserver.spawn(cmd, "^ACCEPT")  -- any command; waits for a matching line
--   proc.line, proc.pid; proc:stop()
local M = {}

local Server = {}
Server.__index = Server

--- Start the test server; raises if it does not print its URL.
function M.start()
  local lua = os.getenv("VIDU_LUA") or "lua5.4"
  local script = "spec/support/testserver.lua"
  local pipe = assert(io.popen("exec " .. lua .. " " .. script, "r"))
  local url = pipe:read("*l")
  local pid = tonumber(pipe:read("*l") or "")
  if not url or not url:match("^http://") or not pid then
    pipe:close()
    error("test server did not start (first line: " .. tostring(url) .. ")")
  end
  return setmetatable({ url = url, pid = pid, pipe = pipe }, Server)
end

--- Run a shell command as a child with a known pid (the shell execs it) and read its stdout
-- until a line matches `want`; raises if it ends first.
function M.spawn(cmd, want)
  local pipe = assert(io.popen("echo $$; exec " .. cmd, "r"))
  local pid = tonumber(pipe:read("*l") or "")
  local line
  repeat
    line = pipe:read("*l")
  until line == nil or line:match(want)
  local proc = setmetatable({ pid = pid, pipe = pipe, line = line }, Server)
  if not pid or not line then
    proc:stop()
    error("child did not print a line matching " .. want .. ": " .. cmd)
  end
  return proc
end

--- Stop the server and wait for it to exit.
function Server:stop()
  if not self.pipe then return end
  os.execute(string.format("kill %d 2>/dev/null", self.pid))
  self.pipe:close()
  self.pipe = nil
end

return M
