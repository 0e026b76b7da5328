--- Webhook deliveries: POST the provider's payload, signed per attempt by the provider's
-- signer, retried with exponential backoff until a 2xx or the attempts run out. Every attempt is
-- recorded for the control API (GET /_emulator/webhooks).
local uv = require("luv")
local client = require("vidu.emulator.client")
local util = require("vidu.emulator.util")

local M = {}
M.__index = M

--- A webhook sender for `app`, with no deliveries yet.
function M.new(app)
  return setmetatable({ app = app, deliveries = {}, active = {} }, M)
end

--- Stops pending retries and forgets every delivery.
function M:clear()
  for tm in pairs(self.active) do
    if not tm:is_closing() then tm:close() end
  end
  self.active = {}
  self.deliveries = {}
end

--- Deliver. d: provider, task_id, url, body (string), attempts (total), sign (function(body,
-- cb(headers | nil, err)) or nil), headers (extra, unsigned).
function M:send(d)
  local rec = { provider = d.provider, task_id = d.task_id, url = d.url, event = d.event,
    body = d.body, attempts = {}, ok = false, done = false }
  self.deliveries[#self.deliveries + 1] = rec
  local cfg = self.app.config
  local max = d.attempts or 4
  local base = tonumber(cfg.webhook_retry_delay) or 0.5
  local function attempt(n)
    local function post(sig_headers)
      local headers = { ["Content-Type"] = "application/json" }
      for k, v in pairs(d.headers or {}) do headers[k] = v end
      for k, v in pairs(sig_headers or {}) do headers[k] = v end
      client.request({ url = d.url, method = "POST", headers = headers, body = d.body,
        timeout = tonumber(cfg.webhook_timeout) or 10 }, function(status, err)
        rec.attempts[#rec.attempts + 1] = { status = status, error = err, time = util.now(),
          headers = headers }
        if status and status >= 200 and status < 300 then
          rec.ok, rec.done = true, true
          return
        end
        if n >= max then
          rec.done = true
          return
        end
        local tm = uv.new_timer()
        self.active[tm] = true
        tm:start(math.floor(base * 1000 * 2 ^ (n - 1)), 0, function()
          self.active[tm] = nil
          tm:close()
          attempt(n + 1)
        end)
      end)
    end
    if d.sign then
      d.sign(d.body, function(h, err)
        if not h then
          io.stderr:write("vidu-emulator: webhook signing failed: ", tostring(err), "\n")
        end
        post(h)
      end)
    else
      post(nil)
    end
  end
  attempt(1)
  return rec
end

return M
