--- vidu.plan: a batch experiment as a product of axes.
--
--   { "provider": "vidu", "model": "viduq1", "images": ["a.png"],
--     "prompts": ["...", "..."], "seeds": [1, 2, 3], "motions": ["small", "large"] }
--
-- Each axis is named in the singular or the plural and holds one value or a list; the batch is
-- the product of all of them. Axes: provider(s), model(s), image(s), prompt(s), duration(s),
-- seed(s), motion(s) (movement_amplitude). Also: `params` (fixed parameters for every item,
-- e.g. resolution), `name`, `out`, `concurrency`, `budget`, `prices` ({ ["vidu/viduq1"] =
-- 0.2 }), `layout` ({ rows = { "prompt" }, columns = { "seed", "motion" } }) for the contact
-- sheet. Image paths are relative to the plan file's directory. A plan is a JSON file or a Lua
-- file returning a table.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local json = require("vidu.json")

local plan = {}

-- The axes in product order (outermost first), with the parameter each one sets.
plan.AXES = {
  { name = "provider", plural = "providers", t = "string" },
  { name = "model", plural = "models", t = "string", param = "model" },
  { name = "image", plural = "images", t = "string", param = "image" },
  { name = "prompt", plural = "prompts", t = "string", param = "prompt" },
  { name = "duration", plural = "durations", t = "number", param = "duration" },
  { name = "seed", plural = "seeds", t = "number", param = "seed" },
  { name = "motion", plural = "motions", t = "string", param = "movement_amplitude" },
}

local OTHER = { name = "string", out = "string", concurrency = "number", budget = "number",
  params = "table", prices = "table", layout = "table", rate = "number" }

local function fail(where, msg)
  return nil, string.format("plan %s: %s", where, msg)
end

local function known_keys()
  local k = {}
  for _, a in ipairs(plan.AXES) do k[#k + 1] = a.name; k[#k + 1] = a.plural end
  for name in pairs(OTHER) do k[#k + 1] = name end
  table.sort(k)
  return table.concat(k, ", ")
end

local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do if t[i] == nil then return false end end
  return n > 0
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

local function resolve_image(base, v)
  if v:match("^%a[%w+.-]*:") or v:sub(1, 1) == "/" or base == "." then return v end
  return base .. "/" .. v
end

--- Checks a plan table and normalises it: every axis a list (absent ones left out), images
-- resolved against `base` (a directory), the other fields checked. Returns the plan | nil, err.
function plan.normalise(t, base, where)
  where = where or "plan"
  if type(t) ~= "table" then return fail(where, "must be a table (a JSON object)") end
  local out = { axes = {}, order = {} }
  local seen = {}
  for _, a in ipairs(plan.AXES) do seen[a.name], seen[a.plural] = a, a end
  for k, v in pairs(t) do
    if type(k) ~= "string" or not (seen[k] or OTHER[k]) then
      return fail(where, string.format("unknown field %q (known: %s)", tostring(k), known_keys()))
    end
    if v == json.null then return fail(where, string.format("field %q is null", k)) end
    if OTHER[k] and type(v) ~= OTHER[k] then
      return fail(where, string.format("field %q must be a %s, got %s", k, OTHER[k], type(v)))
    end
  end
  for _, a in ipairs(plan.AXES) do
    local one, many = t[a.name], t[a.plural]
    if one ~= nil and many ~= nil then
      return fail(where, string.format("give %q or %q, not both", a.name, a.plural))
    end
    local v = many
    if v == nil then v = one end
    if v ~= nil then
      local list = is_list(v) and v or (type(v) ~= "table" and { v } or nil)
      if not list then
        return fail(where, string.format("%q must be a value or a non-empty list", a.plural))
      end
      local vals = {}
      for i, x in ipairs(list) do
        if type(x) ~= a.t then
          return fail(where, string.format("%s[%d] must be a %s, got %s", a.plural, i, a.t, type(x)))
        end
        if a.t == "number" and x % 1 ~= 0 then
          return fail(where, string.format("%s[%d] must be a whole number, got %s", a.plural, i,
            tostring(x)))
        end
        if a.name == "image" then x = resolve_image(base or ".", x) end
        vals[i] = x
      end
      out.axes[a.name] = vals
      out.order[#out.order + 1] = a.name
    end
  end
  if not out.axes.provider then return fail(where, "needs \"provider\" (or \"providers\")") end
  if not out.axes.image then return fail(where, "needs \"image\" (or \"images\")") end
  local params = {}
  for k, v in pairs(t.params or {}) do
    if type(k) ~= "string" then return fail(where, "params: keys must be parameter names") end
    for _, a in ipairs(plan.AXES) do
      if a.param == k then
        return fail(where, string.format("params.%s: use the %q axis instead", k, a.plural))
      end
    end
    params[k] = v
  end
  out.params = params
  out.name, out.out = t.name, t.out
  if t.concurrency ~= nil and (t.concurrency < 1 or t.concurrency % 1 ~= 0) then
    return fail(where, "concurrency must be a whole number >= 1")
  end
  if t.budget ~= nil and t.budget < 0 then return fail(where, "budget must be >= 0 (USD)") end
  out.concurrency, out.budget, out.rate = t.concurrency, t.budget, t.rate
  out.prices = {}
  for k, v in pairs(t.prices or {}) do
    if type(k) ~= "string" or type(v) ~= "number" or v < 0 then
      return fail(where, "prices: expected { [\"provider/model\"] = USD, ... }")
    end
    out.prices[k] = v
  end
  if t.layout then
    for _, side in ipairs({ "rows", "columns" }) do
      local l = t.layout[side]
      if l ~= nil then
        if not is_list(l) then return fail(where, "layout." .. side .. " must be a list of axes") end
        for _, name in ipairs(l) do
          if not out.axes[name] then
            return fail(where, string.format("layout.%s names %q, not an axis of this plan",
              side, tostring(name)))
          end
        end
      end
    end
    out.layout = { rows = t.layout.rows, columns = t.layout.columns }
  end
  return out
end

--- Loads a plan file (JSON, or Lua returning a table): the normalised plan | nil, err.
function plan.load(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "plan: " .. tostring(err) end
  local text = f:read("*a")
  f:close()
  local t
  if path:match("%.lua$") then
    local env = setmetatable({}, { __index = _G })
    local chunk, lerr
    if setfenv then
      chunk, lerr = loadstring(text, "@" .. path)
      if chunk then setfenv(chunk, env) end
    else
      chunk, lerr = load(text, "@" .. path, "t", env)
    end
    if not chunk then return nil, "plan " .. path .. ": " .. tostring(lerr) end
    local ok, v = pcall(chunk)
    if not ok then return nil, "plan " .. path .. ": " .. tostring(v) end
    t = v
  else
    local derr
    t, derr = json.decode(text)
    if t == nil then return nil, "plan " .. path .. ": not valid JSON: " .. tostring(derr) end
  end
  return plan.normalise(t, dirname(path), path)
end

--- The items of a plan: the product of its axes in order (provider outermost, motion
-- innermost). Each item: { index, provider, axes = { name = value }, params }.
function plan.expand(p)
  local items = {}
  local order = p.order
  local current = {}
  local function walk(depth)
    if depth > #order then
      local params = {}
      for k, v in pairs(p.params) do params[k] = v end
      local axes = {}
      for _, a in ipairs(plan.AXES) do
        local v = current[a.name]
        if v ~= nil then
          axes[a.name] = v
          if a.param then params[a.param] = v end
        end
      end
      items[#items + 1] = { index = #items + 1, provider = axes.provider, axes = axes,
        params = params }
      return
    end
    local name = order[depth]
    for _, v in ipairs(p.axes[name]) do
      current[name] = v
      walk(depth + 1)
    end
    current[name] = nil
  end
  walk(1)
  return items
end

--- The axes of a plan that vary (more than one value), in product order.
function plan.varying(p)
  local out = {}
  for _, name in ipairs(p.order) do
    if #p.axes[name] > 1 then out[#out + 1] = name end
  end
  return out
end

--- The plan as a JSON-able table (what `vidu batch` keeps as DIR/plan.json for the report).
function plan.to_json(p)
  local axes = {}
  for k, v in pairs(p.axes) do axes[k] = v end
  return { name = p.name, order = p.order, axes = axes, params = p.params, layout = p.layout }
end

return plan
