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
local util = require("support.util")

local M = {}

--- Start the test server; raises if it does not print its URL.
function M.start()
  local lua = os.getenv("VIDU_LUA") or "lua5.4"
  return util.start_server(lua .. " spec/support/testserver.lua", "test server")
end

--- Run a shell command as a child with a known pid and read its stdout until a line matches
-- `want`; raises if it ends first (see util.spawn).
M.spawn = util.spawn

return M
