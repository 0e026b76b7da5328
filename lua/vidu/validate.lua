--- Parameter validation before any request is sent: a generic checker over the rules each
-- driver declares (`driver.rules`, built with vidu.providers.fields).
--
-- A wrong Lua type or an unknown option name is a programmer's mistake and raises; a bad
-- value returns nil and an error of kind "invalid" naming the field and the limit, so nothing
-- is sent that the provider would refuse (or, worse, bill and then fail).
--
-- Decisions that hold for every provider:
-- * prompt: counted in UTF-8 characters and required to be valid UTF-8; the limit is the
--   model's (`prompt_max` in the model table) or else the provider's.
-- * A missing required value (nil) is a bad value, not a wrong type: it returns an error with
--   limit "required", like any other value the provider would refuse.
-- * `max_body` (a provider's cap on the whole POST body): estimated from the image as it will
--   travel (base64 when inline) plus the text fields, with room for the JSON around them.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local core = require("vidu.core")
local errors = require("vidu.errors")
local url = require("vidu.url")
local images = require("vidu.images")

local validate = {}

--- The rules of `provider`: a driver's rules table as given, or a registered provider's name.
function validate.rules_for(provider)
  if type(provider) == "table" then return provider end
  local registry = require("vidu.providers")
  if not registry.get(provider) then error("vidu: unknown provider " .. tostring(provider), 0) end
  return registry.driver(provider).rules
end

-- Lists the items of a list for messages.
local function list(items)
  local out = {}
  for i = 1, #items do out[i] = tostring(items[i]) end
  return table.concat(out, ", ")
end

local function contains(items, v)
  for i = 1, #items do if items[i] == v then return true end end
  return false
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- Formats a number without a trailing ".0" on Lua 5.4 floats that hold whole values.
local function num(v)
  if v % 1 == 0 and v > -2^53 and v < 2^53 then return string.format("%d", v) end
  return tostring(v)
end

--- nil and an error of kind "invalid" for `field` of `provider`, with its limit.
function validate.invalid(provider, field, limit, message)
  return nil, errors.new{
    kind = "invalid", provider = provider, field = field, limit = limit,
    message = field .. ": " .. message,
  }
end
local invalid = validate.invalid

-- A programmer's mistake: raise with a message naming the option and what was expected.
local function mistake(provider, field, expected, v)
  error(string.format("vidu %s: option '%s' must be %s, got %s", provider, field, expected,
    type(v)), 0)
end

local function is_type(v, t)
  if t == "integer" then return type(v) == "number" end
  if t == "string|table" then return type(v) == "string" or type(v) == "table" end
  return type(v) == t
end

local EXPECTED = {
  integer = "an integer", number = "a number", string = "a string", boolean = "a boolean",
  ["string|table"] = "a string or a table",
}

-- Checks the text of a string value: valid UTF-8 and at most `max` characters.
local function check_text(provider, field, s, max)
  local n, bad = core.utf8_len(s)
  if not n then
    return invalid(provider, field, "UTF-8",
      string.format("not valid UTF-8 (bad byte at offset %d)", bad))
  end
  if max and n > max then
    return invalid(provider, field, max,
      string.format("%d characters, the limit is %d", n, max))
  end
  return true
end

-- Checks one value against its rule (the type is already known to be right).
local function check_value(provider, field, rule, v)
  if rule.t == "integer" then
    if v ~= v or v == math.huge or v == -math.huge or v % 1 ~= 0 then
      return invalid(provider, field, "integer", num(v) .. " is not a whole number")
    end
  end
  if rule.t == "integer" or rule.t == "number" then
    if v ~= v then return invalid(provider, field, "number", "not a number") end
    if rule.min and rule.max and (v < rule.min or v > rule.max) then
      local limit = num(rule.min) .. ".." .. num(rule.max)
      return invalid(provider, field, limit,
        string.format("%s is out of range, the limit is %s", num(v), limit))
    end
    if rule.above and v <= rule.above then
      return invalid(provider, field, "> " .. num(rule.above),
        string.format("%s is too small, it must be above %s", num(v), num(rule.above)))
    end
  end
  if rule.t == "string" then
    if rule.enum and not contains(rule.enum, v) then
      return invalid(provider, field, table.concat(rule.enum, "|"),
        string.format("%q is not one of %s", v, list(rule.enum)))
    end
    if rule.url and not url.is_url(v) then
      return invalid(provider, field, "http(s) URL",
        string.format("%q is not an http(s) URL", v))
    end
    if rule.nonempty and v == "" then
      return invalid(provider, field, "non-empty", "empty")
    end
    if rule.text or rule.url then
      local ok, err = check_text(provider, field, v, rule.max_chars)
      if not ok then return nil, err end
    end
  end
  if rule.t == "string|table" and type(v) == "string" then
    return check_text(provider, field, v)
  end
  if rule.check then
    local ok, limit, message = rule.check(v)
    if not ok then return invalid(provider, field, limit, message) end
  end
  return true
end

-- The model's entry in the provider's model table (or true for a provider whose model ids
-- are checked by the model rule itself, like fal's owner/app ids). Fills in out.model.
local function check_model(provider, rules, out)
  if out.model == nil then out.model = rules.default_model end
  local model = out.model
  if not rules.models then
    local ok, err = check_value(provider, "model", rules.fields.model, model)
    if not ok then return nil, err end
    return true
  end
  local m = rules.models[model]
  if not m then
    local names = sorted_keys(rules.models)
    return invalid(provider, "model", table.concat(names, "|"),
      string.format("%q is not one of %s", model, list(names)))
  end
  return m
end

local function check_duration_resolution(provider, m, model, out)
  local d = out.duration
  if d ~= nil then
    if m.duration_range then
      local lo, hi = m.duration_range[1], m.duration_range[2]
      if d < lo or d > hi then
        local limit = lo .. ".." .. hi
        return invalid(provider, "duration", limit,
          string.format("%s s is not available for %s, the limit is %s", num(d), model, limit))
      end
    elseif not contains(m.durations, d) then
      return invalid(provider, "duration", table.concat(m.durations, "|"),
        string.format("%s s is not available for %s, allowed: %s", num(d), model,
          list(m.durations)))
    end
  end
  local r = out.resolution
  if r ~= nil then
    local allowed = m.any_resolution
    local at = ""
    if not allowed then
      local dd = d or m.default_duration
      allowed = m.resolutions and m.resolutions[dd]
      at = " at " .. num(dd) .. " s"
    end
    if not allowed then
      return invalid(provider, "resolution", "none",
        string.format("%s does not take a resolution", model))
    end
    if not contains(allowed, r) then
      return invalid(provider, "resolution", table.concat(allowed, "|"),
        string.format("%q is not available for %s%s, allowed: %s", r, model, at, list(allowed)))
    end
  end
  return true
end

-- Text fields that travel in the body as they are (JSON escaping may double them).
local BODY_TEXT = { "prompt", "payload", "voice_id", "wm_url", "callback_url" }

-- The request body's size in bytes, estimated from the checked parameters: the image as it
-- travels plus the text fields plus slack for the JSON around them.
local function estimate_body(p)
  local n = 4096
  local img = p.image
  if img.route == "inline" then
    n = n + 4 * math.ceil(img.size / 3) + 32
  elseif img.url then
    n = n + #img.url
  end
  for _, k in ipairs(BODY_TEXT) do
    if type(p[k]) == "string" then n = n + #p[k] * 2 end
  end
  return n
end

--- Validates submit parameters against `provider`'s rules (a driver's rules table, or a
-- registered provider's name). Returns a new table of the checked values, with `model`
-- filled in and `image` replaced by the image descriptor of vidu.images (route decided), or
-- nil, err. Raises for an unknown option name or a value of the wrong Lua type.
function validate.check(provider, params)
  local rules = validate.rules_for(provider)
  local name = rules.name
  if type(params) ~= "table" then
    error(string.format("vidu %s: submit expects a table of parameters, got %s", name,
      type(params)), 0)
  end
  -- Values that travel in a header: a CR, LF or NUL would smuggle another header in. That is
  -- no value a provider could refuse, it is a mistake: it raises, before any upload.
  for k, rule in pairs(rules.fields) do
    local v = params[k]
    if rule.header and type(v) == "string" and v:find("[%c]") then
      error(string.format("vidu %s: option '%s' must not contain control characters (CR, LF," ..
        " NUL): it is sent as an HTTP header", name, k), 0)
    end
  end
  -- Names and types first: these raise, whatever the values.
  for k, v in pairs(params) do
    local rule = type(k) == "string" and rules.fields[k]
    if not rule then
      error(string.format("vidu %s: unknown option '%s' (known: %s)", name, tostring(k),
        table.concat(sorted_keys(rules.fields), ", ")), 0)
    end
    if rule.t == "image" then
      images.check_type(name, v)
    elseif not is_type(v, rule.t) then
      mistake(name, k, EXPECTED[rule.t], v)
    end
  end

  local out = {}
  for k, v in pairs(params) do out[k] = v end

  -- Model first: the prompt limit and the duration/resolution table depend on it.
  local m, err = check_model(name, rules, out)
  if not m then return nil, err end
  local model_rules = type(m) == "table" and m or nil

  for _, field in ipairs(rules.order) do
    local rule = rules.fields[field]
    local v = out[field]
    if field == "image" then
      if v == nil then
        return invalid(name, "image", "required", "missing, it is required")
      end
      local desc, ierr = images.resolve(rules, v, { upload = out.upload })
      if not desc then return nil, ierr end
      out.image = desc
    elseif field == "prompt" then
      if v == nil or (rule.required and v == "") then
        if rule.required then
          return invalid(name, "prompt", "required",
            v == nil and "missing, it is required" or "empty, it is required")
        end
      else
        local max = model_rules and model_rules.prompt_max or rules.prompt_max
        local ok, perr = check_text(name, "prompt", v, max)
        if not ok then return nil, perr end
      end
    elseif field ~= "model" and v ~= nil then
      local ok, verr = check_value(name, field, rule, v)
      if not ok then return nil, verr end
      if field == "duration" or (field == "resolution" and out.duration == nil) then
        if model_rules then
          local ok2, derr = check_duration_resolution(name, model_rules, out.model, out)
          if not ok2 then return nil, derr end
        end
      end
    end
  end
  -- Whole numbers stay integers on 5.4 (cjson would print 5.0 otherwise).
  for field, rule in pairs(rules.fields) do
    if rule.t == "integer" and out[field] ~= nil then out[field] = math.floor(out[field]) end
  end
  if rules.max_body then
    local size = estimate_body(out)
    if size > rules.max_body then
      return invalid(name, "body", rules.max_body, string.format(
        "the request would be about %.1f MB, %s takes at most %.0f MB (send the image as an"
          .. " http(s) URL)", size / 1e6, name, rules.max_body / 1e6))
    end
  end
  return out
end

return validate
