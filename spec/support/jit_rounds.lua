-- Rounds of 40 requests queued behind 4 connection slots, in a fresh process: the pattern in
-- which Debian 12's LuaJIT (2022-03-20 snapshot, LuaJIT issue #827) miscompiled a `pairs`
-- loop of vidu.http until its modules ran with the JIT off (see vidu/init.lua). Prints
-- "rounds N, bad R, first: <error>" and exits 0; spec/luajit_spec.lua reads the line.
--   $VIDU_LUA spec/support/jit_rounds.lua [rounds]
package.path = "spec/?.lua;" .. package.path
local client_mod = require("vidu.client")
local scheduler = require("vidu.scheduler")
local scripted = require("support.scripted")

local ROUNDS = tonumber(arg[1]) or 60
local srv = scripted.start()
local driver = {
  name = "test", env_key = "VIDU_TEST_KEY", default_base_url = srv.url,
  auth_header = function(key) return "Bearer " .. key end,
  parse_error = function() return {} end,
}
local bad, first = 0, nil
for _ = 1, ROUNDS do
  srv:reset()
  srv:script("slow", { { status = 200, json = { ok = true }, delay_ms = 2 } })
  local s = scheduler.new()
  local c = client_mod.new(driver, { api_key = "k", scheduler = s, max_connections = 4 })
  local ok, results, nfailed = pcall(s.run, s, function()
    local fns = {}
    for i = 1, 40 do fns[i] = function() return c:request{ path = "/s/slow" } end end
    return s:gather(fns)
  end)
  if not ok then
    bad, first = bad + 1, first or tostring(results)
  elseif nfailed > 0 then
    bad = bad + 1
    for _, r in ipairs(results) do
      if not r.ok and not first then
        first = type(r.err) == "table" and tostring(r.err.message) or tostring(r.err)
      end
    end
  end
end
srv:stop()
print(string.format("rounds %d, bad %d, first: %s", ROUNDS, bad, tostring(first)))
