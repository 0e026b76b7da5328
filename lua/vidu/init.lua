--- lua-vidu: image + prompt -> video, through fal, vidu, wavespeed, vtrix or a relay.
--
--   local vidu = require("vidu")
--   vidu.run(function()
--     local client = vidu.client("vidu")
--     local task = assert(client:submit{ image = "in.png", prompt = "..." })
--     assert(task:wait{ timeout = 600 })
--     assert(task:download("out.mp4"))
--   end)
--
-- Everything here runs on one module-level scheduler over one vidu.core engine, made on
-- first use. Waits yield inside vidu.run/vidu.spawn coroutines and block elsewhere; hosts
-- with their own loop call vidu.step() or attach (vidu.hosts.luv, vidu.hosts.ngx) and never
-- block: once attached, a wait outside a coroutine raises instead.
-- LuaJIT: every module of vidu switches the JIT off for its own functions (the first line
-- after each header: jit.off(true, true)). Debian 12's LuaJIT (2.1 snapshot of 2022-03-20,
-- also what its Neovim links) miscompiles some `pairs` loops once a trace gets blacklisted
-- (LuaJIT issue #827, fixed upstream on 2022-04-03): here it turned a one-key option table
-- into `unknown option table: 0x...` in most rounds of 40 queued requests. Our Lua is
-- bookkeeping around the C core, so running it in LuaJIT's interpreter costs nothing
-- measurable (bench/generations.lua 1000 fal: client CPU 1.0-1.2 s either way); the host's
-- own code keeps its JIT.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local scheduler = require("vidu.scheduler")
local client = require("vidu.client")
local errors = require("vidu.errors")

local vidu = {}

vidu.version = "0.1.0"
vidu.errors = errors
--- Webhook verification (vidu.webhooks.verify); see that module.
vidu.webhooks = require("vidu.webhooks")

local function sched() return scheduler.default() end

--- Makes a client for a provider ("fal", "vidu", "wavespeed", "vtrix", "relay").
-- See vidu.client module for the options (api_key, base_url, timeout, poll, retries,
-- max_connections, and the provider's own). journal = a path or a vidu.journal object:
-- every task of the client is journaled (see vidu.journal); a journal that cannot be
-- opened raises.
function vidu.client(name, opts)
  if type(opts) == "table" and opts.journal ~= nil then
    local j = opts.journal
    local rest = {}
    for k, v in pairs(opts) do if k ~= "journal" then rest[k] = v end end
    if type(j) == "string" then
      local err
      j, err = require("vidu.journal").open(j)
      if not j then error(err, 2) end
    elseif type(j) ~= "table" or type(j.attach) ~= "function" then
      error("vidu.client: option journal must be a path or a vidu.journal object", 2)
    end
    return j:attach(client.new(name, rest))
  end
  return client.new(name, opts)
end

--- Runs fn(...) in a coroutine and drives everything until fn and all it spawned finish;
-- returns fn's results. An error in fn is raised here with the coroutine's traceback.
function vidu.run(fn, ...)
  if type(fn) ~= "function" then error("vidu.run expects a function", 2) end
  return sched():run(fn, ...)
end

--- Starts fn(...) in a coroutine and returns its job (job:wait() -> true, results... |
-- false, err). Inside vidu.run the run waits for it too.
function vidu.spawn(fn, ...)
  return sched():spawn(fn, ...)
end

--- Sleeps: yields inside a coroutine of the scheduler, blocks (driving the rest) outside.
function vidu.sleep(seconds)
  sched():sleep(seconds)
end

--- Waits for tasks, functions and jobs concurrently: results, nfailed. results[i] is
-- { ok = true, <values...> } or { ok = false, err = e }; tasks are waited with wait_opts.
function vidu.gather(list, wait_opts)
  return sched():gather(list, wait_opts)
end

--- For a host's own loop: advances everything without blocking, resuming coroutines for
-- about `budget` seconds (default 0.002); returns the seconds until it wants calling again
-- (0 = more is ready now), or nil when nothing is pending.
function vidu.step(budget)
  return sched():step(budget)
end

--- pcall that a wait inside it may yield through (plain Lua 5.1 cannot with its own pcall;
-- elsewhere this is pcall): true, results... | false, err.
function vidu.pcall(fn, ...)
  return sched():pcall(fn, ...)
end

--- The module-level scheduler (for stats() and advanced use).
function vidu.scheduler()
  return sched()
end

return vidu
