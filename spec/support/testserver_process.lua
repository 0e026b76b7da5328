-- Starts spec/support/testserver.lua as a child process and stops it again.
--
--   local testserver = require("support.testserver_process")
--   local srv = testserver.start()   -- srv.url = "http://127.0.0.1:PORT", srv.pid
--   srv:stop()                        -- kills it and reaps it; safe to call twice
--
-- The child runs with $VIDU_LUA (the interpreter the Makefile names), falling back to lua5.4.
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

--- Stop the server and wait for it to exit.
function Server:stop()
  if not self.pipe then return end
  os.execute(string.format("kill %d 2>/dev/null", self.pid))
  self.pipe:close()
  self.pipe = nil
end

return M
