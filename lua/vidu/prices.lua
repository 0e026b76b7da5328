--- vidu.prices: what a generation costs, per provider and model, as documented.
--
-- Each row carries its figure, the date it was read and where. A provider whose pages give
-- no price has `usd = nil` ("unknown"): nothing is invented, and a budget over it needs a
-- price from the user (an override). Where a provider reports the cost of a finished task
-- (Vtrix: usage.cost in USD; Vidu and relays: credits), the reported figure is preferred for
-- what was spent; the table only estimates what a submit will commit.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local prices = {}

-- provider, model ("*" = every model of the provider), usd per video (nil = unknown), the
-- unit, what the provider reports on a finished task, when and where the figure was read.
prices.table = {
  { provider = "fal", model = "fal-ai/vidu/q1/image-to-video", usd = 0.40, per = "video (5 s)",
    reports = nil, date = "2026-12-02",
    source = "fal.ai/models/fal-ai/vidu/q1/image-to-video (llms.txt): \"For 5s video your "
      .. "request will cost $0.40\"" },
  { provider = "wavespeed", model = "vidu/image-to-video-2.0", usd = 0.30, per = "video",
    reports = nil, date = "2026-12-02",
    source = "wavespeed.ai model page Vidu Image To Video 2.0, Pricing: \"Per video $0.30\" "
      .. "(the page names no other price for 8 s)" },
  { provider = "vidu", model = "*", usd = nil, per = "video", reports = "credits",
    date = "2026-12-02",
    source = "platform.vidu.com/docs/image-to-video and get-generation: answers carry `credits`;"
      .. " the pages read give no USD price per credit or per video" },
  { provider = "relay", model = "*", usd = nil, per = "video", reports = "credits",
    date = "2026-12-02",
    source = "the relay's /vidu/v2 pages pass Vidu's `credits` through; each relay sets its own"
      .. " price, none documented" },
  { provider = "vtrix", model = "*", usd = nil, per = "video", reports = "usd",
    date = "2026-12-02",
    source = "doc.vtrix.ai viduq1-img2video: usage.cost \"Total cost in USD\" on a completed "
      .. "task; no price listed before the task runs" },
}

--- The table's row for a provider and model (an exact model first, then "*"), or nil.
function prices.lookup(provider, model)
  local wild
  for _, row in ipairs(prices.table) do
    if row.provider == provider then
      if row.model == model then return row end
      if row.model == "*" then wild = row end
    end
  end
  return wild
end

--- Parses a price override "provider/model=USD", "provider=USD" or "USD" (every item) into
-- name, usd: name is "provider/model", "provider" or "*". nil, message when malformed.
function prices.parse_override(s)
  if type(s) ~= "string" then return nil, "a price override must be a string" end
  local name, v = s:match("^([^=]+)=(.+)$")
  if not name then name, v = "*", s end
  local usd = tonumber(v)
  if not usd or usd < 0 or usd ~= usd or usd == math.huge then
    return nil, string.format("price %q: expected provider/model=USD, provider=USD or USD", s)
  end
  return name, usd
end

--- The estimated cost in USD of one submit of checked params on `provider`:
-- usd, source | nil, reason. `overrides` maps "provider/model", "provider" or "*" to USD
-- and comes first; then the table; an unknown price gives nil and a reason that says how
-- to pass one.
function prices.estimate(provider, params, overrides)
  local model = type(params) == "table" and params.model or nil
  local name = provider .. "/" .. tostring(model)
  if overrides then
    local o = overrides[name] or overrides[provider] or overrides["*"]
    if o then return o, "override" end
  end
  local row = prices.lookup(provider, model)
  if row and row.usd then return row.usd, "table" end
  return nil, string.format("no documented price for %s (%s): pass one with --price %s=USD",
    name, row and row.source or "not in the table", name)
end

--- A finished task's reported cost in USD, when the provider reports USD (Vtrix), else nil.
function prices.reported_usd(provider, cost)
  local row = prices.lookup(provider, "*")
  if row and row.reports == "usd" and type(cost) == "number" then return cost end
  return nil
end

return prices
