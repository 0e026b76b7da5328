--- Retry policy: which failures are worth another attempt, and how long to wait before it.
--
-- Backoff is exponential with jitter, so a thousand clients that failed together do not come
-- back together. A server's Retry-After is honoured (never retried earlier than asked) up to a
-- cap: when the server asks for more, we wait the cap and try again (a wait's deadline, when
-- there is one, still ends it).
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local retry = {}

--- Defaults: `attempts` is the total number of tries (1 = no retry); delays in seconds.
retry.defaults = {
  attempts = 5,          -- total tries per request
  base = 0.5,            -- first backoff step
  cap = 30,              -- no backoff step is longer than this
  max_retry_after = 120, -- longest Retry-After we wait; more -> wait this long, then try
  jitter = "equal",      -- "equal" (half fixed, half random), "full" (0..step) or "none"
}

--- Returns a policy table: `opts` over retry.defaults (unknown names raise).
function retry.policy(opts)
  local p = {}
  for k, v in pairs(retry.defaults) do p[k] = v end
  if opts ~= nil then
    if type(opts) ~= "table" then error("retry policy must be a table", 2) end
    for k, v in pairs(opts) do
      if retry.defaults[k] == nil and k ~= "random" then
        error("unknown retry option " .. tostring(k), 2)
      end
      p[k] = v
    end
  end
  if p.jitter ~= "equal" and p.jitter ~= "full" and p.jitter ~= "none" then
    error("retry jitter must be \"equal\", \"full\" or \"none\"", 2)
  end
  return p
end

local DEFAULT = retry.policy()

local MONTHS = {
  jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
  jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12,
}

-- Days from 1970-01-01 to the given civil date (proleptic Gregorian; H. Hinnant's
-- algorithm). Done by hand because os.time() reads its table as local time, not UTC.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Parses an HTTP-date (IMF-fixdate, RFC 850 or asctime) to seconds since the epoch, or nil.
function retry.parse_http_date(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, hh, mm, ss
  -- IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
  d, mon, y, hh, mm, ss = s:match("^%a+,%s+(%d%d?)%s+(%a%a%a)%s+(%d%d%d%d)%s+(%d%d):(%d%d):(%d%d)%s+GMT")
  if not d then
    -- RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
    d, mon, y, hh, mm, ss = s:match("^%a+,%s+(%d%d)%-(%a%a%a)%-(%d%d)%s+(%d%d):(%d%d):(%d%d)%s+GMT")
    if y then
      y = tonumber(y)
      -- RFC 7231: a two-digit year more than 50 years in the future is in the past century.
      y = (y < 70) and (2000 + y) or (1900 + y)
    end
  end
  if not d then
    -- asctime: "Sun Nov  6 08:49:37 1994"
    mon, d, hh, mm, ss, y = s:match("^%a+%s+(%a%a%a)%s+(%d%d?)%s+(%d%d):(%d%d):(%d%d)%s+(%d%d%d%d)")
  end
  if not d then return nil end
  local m = MONTHS[mon:lower()]
  if not m then return nil end
  y, d, hh, mm, ss = tonumber(y), tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss)
  if d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  return days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss
end

--- Parses a Retry-After header value to a number of seconds (>= 0) from `now` (epoch
-- seconds, default os.time()). Accepts delay-seconds or an HTTP-date; nil when unparsable.
function retry.parse_retry_after(value, now)
  if type(value) == "number" then return value >= 0 and value or nil end
  if type(value) ~= "string" then return nil end
  value = value:match("^%s*(.-)%s*$")
  if value:match("^%d+$") then return tonumber(value) end
  -- Not in the RFC, but some servers send fractions; reading them costs nothing.
  if value:match("^%d+%.%d+$") then return tonumber(value) end
  local at = retry.parse_http_date(value)
  if not at then return nil end
  local delta = at - (now or os.time())
  return delta > 0 and delta or 0
end

--- Seconds to wait before attempt `attempt + 1`, after attempt number `attempt` (1-based)
-- failed with `err`; nil means "do not retry" (out of attempts). The backoff step is
-- min(cap, base * 2^(attempt-1)); a Retry-After raises the delay to what the server asked,
-- at most policy.max_retry_after.
function retry.delay_for(attempt, err, policy)
  policy = policy or DEFAULT
  if attempt >= policy.attempts then return nil end
  local step = policy.base * 2 ^ (attempt - 1)
  if step > policy.cap then step = policy.cap end
  local random = policy.random or math.random
  local delay
  if policy.jitter == "full" then
    delay = random() * step
  elseif policy.jitter == "equal" then
    delay = step / 2 + random() * step / 2
  else
    delay = step
  end
  local after = type(err) == "table" and err.retry_after or nil
  if after then
    if after > policy.max_retry_after then after = policy.max_retry_after end
    if after > delay then delay = after end
  end
  return delay
end

-- Engine error kinds that a retry can cure. "too_large", "file", "tls", "protocol" and
-- "canceled" are not: the same request would fail the same way. "bad_json" is ours (a 2xx
-- whose JSON does not parse: a proxy's page or a cut-off body).
local TRANSIENT = {
  resolve = true, connect = true, timeout = true, reset = true, other = true, bad_json = true,
  stalled = true,
}

--- Whether a finished transfer deserves another attempt: the one place this is decided.
-- `result` is the engine's finished item (ok, status, error, sent); `idempotent` says whether
-- re-sending is harmless; `hint` is what the provider's own error body says (its driver's
-- parse_error: false = final, true = worth another try, nil = no opinion). Returns true, or
-- false plus "uncertain" when a non-idempotent request may have been processed (it was sent
-- and then the connection failed).
function retry.should_retry(result, idempotent, hint)
  if result.ok then
    -- The provider's own word first: a 504 from the user's own start timeout is final; a
    -- 409 it marks retryable is worth another try when re-sending is harmless.
    if hint == false then return false end
    if hint == true and idempotent then return true end
    local s = result.status
    if idempotent then
      return s == 408 or s == 429 or (s >= 500 and s <= 599)
    end
    -- A 429 or 503 means the server refused the work before doing it.
    return s == 429 or s == 503
  end
  if result.sent ~= false and not idempotent then
    -- Whatever went wrong after the bytes left, the server may have acted on them.
    return false, "uncertain"
  end
  return TRANSIENT[result.error] == true
end

return retry
