-- The fault matrix against the emulator (issue 9): every fault kind the emulator has x every
-- provider x submit, poll, result (fal) and download x once and persistent, through the public
-- client API. Prints one row per case (outcome, submit POSTs the emulator logged, tasks it
-- created, seconds) and a summary; asserts nothing (spec/faults_spec.lua does). It lives in
-- bench/faults/ so that `make bench` (bench/*.lua) does not run it.
--
--   make faults   (FAULTS_PROVIDERS="fal vidu", FAULTS_PHASES="poll", FAULTS_KINDS="hang 429" narrow it)
local function here()
  local src = debug.getinfo(1, "S").source
  return src:match("^@(.*)/bench/faults/[^/]*$") or "."
end
package.path = here() .. "/spec/?.lua;" .. package.path

local matrix = require("support.fault_matrix")

local function words(name)
  local v = os.getenv(name)
  if not v or v == "" then return nil end
  local t = {}
  for w in v:gmatch("%S+") do t[#t + 1] = w end
  return t
end

local cases = matrix.cases{ providers = words("FAULTS_PROVIDERS"), phases = words("FAULTS_PHASES"),
  kinds = words("FAULTS_KINDS"), modes = words("FAULTS_MODES") }
local m = matrix.new()
local ok, rows = pcall(m.run, m, cases, function(_, i, n)
  if i % 20 == 0 or i == n then io.stderr:write(string.format("faults: %d/%d\n", i, n)) end
end)
m:stop()
if not ok then error(rows, 0) end
print(matrix.table(rows))
print(matrix.summary(rows))
