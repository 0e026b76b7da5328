--- Webhook deliveries: POST the provider's payload, signed per attempt by the provider's
-- signer, retried with exponential backoff until a 2xx or the attempts run out. Every attempt is
-- recorded for the control API (GET /_emulator/webhooks).
--
-- Knobs (run-level config, POST /_emulator/config), for testing a receiver's verification:
--   webhook_bad_signature  true: one character of the signature header is changed after
--                          signing (it stays well-formed hex or base64, it just does not match)
--   webhook_stale          N: timestamps (fal, WaveSpeed) and the Date (Vidu) are N seconds
--                          in the past, correctly signed, so only a freshness check refuses them
--   webhook_duplicate      true: once a delivery is over, the same body is delivered again
--                          (signed afresh), as when a provider never saw the receiver's 2xx
--   webhook_out_of_order   true: a provider that sends a non-final callback (Vidu's
--                          "processing") holds it back and sends it after the final one
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local uv = require("luv")
local client = require("vidu.emulator.client")
local util = require("vidu.emulator.util")

local M = {}
M.__index = M

--- A webhook sender for `app`, with no deliveries yet.
function M.new(app)
  return setmetatable({ app = app, deliveries = {}, active = {}, generation = 0 }, M)
end

--- Stops pending retries and forgets every delivery.
function M:clear()
  for tm in pairs(self.active) do
    if not tm:is_closing() then tm:close() end
  end
  self.active = {}
  self.deliveries = {}
  -- Deliveries still in flight belong to the old generation: they chain nothing after a reset.
  self.generation = self.generation + 1
end

--- The Unix time a signer should sign now (webhook_stale seconds in the past).
function M:timestamp()
  return os.time() - math.floor(tonumber(self.app.config.webhook_stale) or 0)
end

--- Should a provider hold its non-final callback until after the final one?
function M:out_of_order()
  return self.app.config.webhook_out_of_order == true
end

-- One character of a signature header changed, the value staying well-formed: the character
-- in the middle (a hex or base64 digit in every scheme here) becomes "0", or "1" if it was "0".
local function corrupt(value)
  local i = math.floor(#value / 2) + 1
  local c = value:sub(i, i) == "0" and "1" or "0"
  return value:sub(1, i - 1) .. c .. value:sub(i + 1)
end

--- Deliver. d: provider, task_id, url, body (string), attempts (total), sign (function(body,
-- cb(headers | nil, err)) or nil), sig_header (the header the signature is in), headers
-- (extra, unsigned), after (another delivery d to send once this one is over), duplicate
-- (internal: this is the webhook_duplicate copy).
function M:send(d)
  local cfg = self.app.config
  local rec = { provider = d.provider, task_id = d.task_id, url = d.url, event = d.event,
    body = d.body, attempts = {}, ok = false, done = false, duplicate = d.duplicate or nil }
  local tampered = {}
  if cfg.webhook_bad_signature == true and d.sign then tampered[#tampered + 1] = "signature" end
  if (tonumber(cfg.webhook_stale) or 0) > 0 and d.sign then tampered[#tampered + 1] = "stale" end
  if #tampered > 0 then rec.tampered = tampered end
  local duplicate = cfg.webhook_duplicate == true and not d.duplicate
  local generation = self.generation
  self.deliveries[#self.deliveries + 1] = rec
  -- Once the delivery is over (accepted or given up): what was chained after it.
  local function over()
    rec.done = true
    if generation ~= self.generation then return end
    if duplicate then
      local copy = {}
      for k, v in pairs(d) do copy[k] = v end
      copy.duplicate, copy.after = true, nil
      self:send(copy)
    end
    if d.after then self:send(d.after) end
  end
  local max = d.attempts or 4
  local base = tonumber(cfg.webhook_retry_delay) or 0.5
  local function attempt(n)
    local function post(sig_headers)
      local headers = { ["Content-Type"] = "application/json" }
      for k, v in pairs(d.headers or {}) do headers[k] = v end
      for k, v in pairs(sig_headers or {}) do headers[k] = v end
      if cfg.webhook_bad_signature == true and d.sig_header and headers[d.sig_header] then
        headers[d.sig_header] = corrupt(headers[d.sig_header])
      end
      client.request({ url = d.url, method = "POST", headers = headers, body = d.body,
        timeout = tonumber(cfg.webhook_timeout) or 10 }, function(status, err)
        rec.attempts[#rec.attempts + 1] = { status = status, error = err, time = util.now(),
          headers = headers }
        if status and status >= 200 and status < 300 then
          rec.ok = true
          return over()
        end
        if n >= max then return over() end
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
