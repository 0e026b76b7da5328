--- Parameter validation for every provider, before any request is sent.
--
-- The rules are tables, one per provider: which option names exist, their Lua type and the
-- values the provider documents (../shared/providers.md and the providers' own pages). A
-- wrong Lua type or an unknown option name is a programmer's mistake and raises; a bad value
-- returns nil and an error of kind "invalid" naming the field and the limit, so nothing is
-- sent that the provider would refuse (or, worse, bill and then fail).
--
-- Decisions where the sources leave room (see also the README's provider notes):
-- * seed: an integer in 0..2^31-1 (Vidu, relay, Vtrix and fal document no range; Vidu's own
--   seeds and the WaveSpeed page both stay within a signed 32-bit int). WaveSpeed documents
--   -1..2147483647, -1 meaning random.
-- * prompt: counted in UTF-8 characters and required to be valid UTF-8: 1500 for fal, Vidu,
--   WaveSpeed and the relay's Vidu 1.x/2.0/q1 models; 2000 for Vtrix and the relay's viduq2
--   models (the newer Vidu pages and every mirror agree on 2000 for q2).
-- * A missing required value (nil) is a bad value, not a wrong type: it returns an error
--   with limit "required", like any other value the provider would refuse.
-- * Relay models beyond Vidu's own table are third-party documented only: viduq1-classic is
--   taken as viduq1 (5 s, 1080p); viduq2-pro and viduq2-turbo take 1..10 s at 540p, 720p or
--   1080p.
local core = require("vidu.core")
local errors = require("vidu.errors")
local http = require("vidu.http")
local images = require("vidu.images")

local validate = {}

local INT32_MAX = 2147483647
local AMPLITUDES = { "auto", "small", "medium", "large" }

-- Vidu's model table: for each model the durations it makes and, per duration, the
-- resolutions it offers (the first one is the provider's default). Official Vidu page:
-- viduq1 5 s at 1080p; vidu2.0 and vidu1.5 4 s at 360p/720p/1080p or 8 s at 720p.
local Q1 = { durations = { 5 }, default_duration = 5, resolutions = { [5] = { "1080p" } } }
local V2 = {
  durations = { 4, 8 }, default_duration = 4,
  resolutions = { [4] = { "360p", "720p", "1080p" }, [8] = { "720p" } },
}
local Q2 = {
  duration_range = { 1, 10 }, default_duration = 5,
  any_resolution = { "540p", "720p", "1080p" }, prompt_max = 2000,
}

local VIDU_MODELS = { viduq1 = Q1, ["vidu2.0"] = V2, ["vidu1.5"] = V2 }
local RELAY_MODELS = {
  viduq1 = Q1, ["vidu2.0"] = V2, ["vidu1.5"] = V2,
  ["viduq1-classic"] = Q1, ["viduq2-pro"] = Q2, ["viduq2-turbo"] = Q2,
}
local VTRIX_MODELS = { viduq1_img2video = Q1 }
local WAVESPEED_MODELS = {
  ["vidu/image-to-video-2.0"] = { durations = { 4, 8 }, default_duration = 4 },
}

-- Field rules. t: the Lua type ("integer" is a number checked for a whole value later);
-- the other keys constrain the value.
local F = {
  image = { t = "image", required = true },
  prompt = { t = "string", text = true },
  seed = { t = "integer", min = 0, max = INT32_MAX },
  movement_amplitude = { t = "string", enum = AMPLITUDES },
  duration = { t = "integer" },     -- checked against the model table
  resolution = { t = "string" },    -- checked against the model table
  bgm = { t = "boolean" },
  off_peak = { t = "boolean" },
  is_rec = { t = "boolean" },
  audio = { t = "boolean" },
  watermark = { t = "boolean" },
  wm_position = { t = "integer", min = 1, max = 4 },
  wm_url = { t = "string", url = true },
  voice_id = { t = "string", text = true, max_chars = 256 },
  payload = { t = "string", text = true, max_chars = 1048576 },
  callback_url = { t = "string", url = true },
  meta_data = { t = "string|table" },
  upload = { t = "boolean" },
}

-- Copies a rule and changes some keys.
local function with(rule, changes)
  local r = {}
  for k, v in pairs(rule) do r[k] = v end
  for k, v in pairs(changes) do r[k] = v end
  return r
end

-- Builds a provider's `fields` (name -> rule) and `order` (the order fields are checked in,
-- so the first error reported is stable) from one ordered list of { name, rule }, leaving out
-- the names in `except`.
local function fieldset(list, except)
  local fields, order = {}, {}
  for _, item in ipairs(list) do
    local name = item[1]
    if not (except and except[name]) then
      fields[name] = item[2]
      order[#order + 1] = name
    end
  end
  return fields, order
end

-- The body of Vidu's img2video, which the relay and Vtrix take too (each without a few).
local VIDU_FAMILY = {
  { "model", { t = "string" } }, { "prompt", F.prompt }, { "duration", F.duration },
  { "resolution", F.resolution }, { "seed", F.seed },
  { "movement_amplitude", F.movement_amplitude }, { "bgm", F.bgm }, { "payload", F.payload },
  { "off_peak", F.off_peak }, { "callback_url", F.callback_url }, { "is_rec", F.is_rec },
  { "audio", F.audio }, { "voice_id", F.voice_id }, { "watermark", F.watermark },
  { "wm_position", F.wm_position }, { "wm_url", F.wm_url }, { "meta_data", F.meta_data },
  { "upload", F.upload }, { "image", F.image },
}

local FAL_FIELDS = {
  { "model", { t = "string", fal_model = true } },
  { "prompt", with(F.prompt, { required = true }) }, { "seed", F.seed },
  { "movement_amplitude", F.movement_amplitude },
  { "fal_webhook", { t = "string", url = true } },
  { "priority", { t = "string", enum = { "normal", "low" } } },
  -- fal's docs: must be above 0.1 s (the Python client asks for more than 1 s).
  { "start_timeout", { t = "number", above = 0.1 } },
  { "hint", { t = "string", text = true, nonempty = true } },
  { "upload", F.upload }, { "image", F.image },
}

local WAVESPEED_FIELDS = {
  { "model", { t = "string" } }, { "prompt", with(F.prompt, { required = true }) },
  { "duration", F.duration },
  -- WaveSpeed's page: -1 ~ 2147483647, -1 (the default) meaning a random seed.
  { "seed", with(F.seed, { min = -1 }) },
  { "movement_amplitude", F.movement_amplitude }, { "sync", { t = "boolean" } },
  { "webhook", { t = "string", url = true } }, { "upload", F.upload }, { "image", F.image },
}

-- Each provider: its fields and check order, `models` the model table, `default_model` what
-- is sent when none is given.
local function provider_rules(list, except, rest)
  rest.fields, rest.order = fieldset(list, except)
  return rest
end

local PROVIDERS = {
  fal = provider_rules(FAL_FIELDS, nil, {
    prompt_max = 1500, default_model = "fal-ai/vidu/q1/image-to-video",
  }),
  vidu = provider_rules(VIDU_FAMILY, nil, {
    prompt_max = 1500, models = VIDU_MODELS, default_model = "viduq1",
  }),
  relay = provider_rules(VIDU_FAMILY, { audio = true, voice_id = true }, {
    prompt_max = 1500, models = RELAY_MODELS, default_model = "viduq1",
  }),
  vtrix = provider_rules(VIDU_FAMILY, { meta_data = true }, {
    prompt_max = 2000, models = VTRIX_MODELS, default_model = "viduq1_img2video",
  }),
  wavespeed = provider_rules(WAVESPEED_FIELDS, nil, {
    prompt_max = 1500, models = WAVESPEED_MODELS, default_model = "vidu/image-to-video-2.0",
  }),
}
validate.PROVIDERS = PROVIDERS
validate.INT32_MAX = INT32_MAX

-- Lists the keys of a set or the items of a list for messages, in a stable order.
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

local function invalid(provider, field, limit, message)
  return nil, errors.new{
    kind = "invalid", provider = provider, field = field, limit = limit,
    message = field .. ": " .. message,
  }
end
validate.invalid = invalid

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
  image = "a path, an http(s) URL, a data: URI or a table { data = bytes }",
}

--- True when `s` is an absolute http(s) URL with a host and no whitespace (vidu.http's check).
validate.is_http_url = http.is_url

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
    if rule.above and (v <= rule.above or v ~= v) then
      return invalid(provider, field, "> " .. num(rule.above),
        string.format("%s is too small, it must be above %s", num(v), num(rule.above)))
    end
  end
  if rule.t == "string" then
    if rule.enum and not contains(rule.enum, v) then
      return invalid(provider, field, table.concat(rule.enum, "|"),
        string.format("%q is not one of %s", v, list(rule.enum)))
    end
    if rule.url and not validate.is_http_url(v) then
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
  return true
end

-- fal model ids are owner/app[/path]: segments of letters, digits, '-', '_' and '.'.
local function check_fal_model(provider, v)
  local ok = v:match("^[%w._-]+/[%w._-]+") and not v:find("//", 1, true)
    and not v:find("[^%w._/-]") and v:sub(-1) ~= "/"
  if not ok then
    return invalid(provider, "model", "owner/app[/path]",
      string.format("%q is not a fal model id (owner/app[/path])", v))
  end
  return true
end

-- Checks model, duration and resolution together against the provider's model table, and
-- the prompt against the model's own limit. Fills in out.model.
local function check_model(provider, spec, out)
  local model = out.model
  if model == nil then model = spec.default_model end
  out.model = model
  if spec.fields.model.fal_model then return check_fal_model(provider, model) end
  local m = spec.models[model]
  if not m then
    local names = sorted_keys(spec.models)
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

--- Validates the submit parameters of `provider` ("fal", "vidu", "relay", "vtrix",
-- "wavespeed"). Returns a new table of the checked values, with `model` filled in and
-- `image` replaced by the image descriptor of vidu.images (route decided), or nil, err.
-- Raises for an unknown option name or a value of the wrong Lua type.
function validate.check(provider, params)
  local spec = PROVIDERS[provider]
  if not spec then error("vidu: unknown provider " .. tostring(provider), 0) end
  if type(params) ~= "table" then
    error(string.format("vidu %s: submit expects a table of parameters, got %s", provider,
      type(params)), 0)
  end
  -- Names and types first: these raise, whatever the values.
  for k, v in pairs(params) do
    local rule = type(k) == "string" and spec.fields[k]
    if not rule then
      local names = sorted_keys(spec.fields)
      error(string.format("vidu %s: unknown option '%s' (known: %s)", provider, tostring(k),
        table.concat(names, ", ")), 0)
    end
    if rule.t == "image" then
      images.check_type(provider, v)
    elseif not is_type(v, rule.t) then
      mistake(provider, k, EXPECTED[rule.t], v)
    end
  end

  local out = {}
  for k, v in pairs(params) do out[k] = v end

  -- Model first: the prompt limit and the duration/resolution table depend on it.
  local m, err = check_model(provider, spec, out)
  if not m then return nil, err end
  local model_rules = type(m) == "table" and m or nil

  for _, field in ipairs(spec.order) do
    local rule = spec.fields[field]
    local v = out[field]
    if field == "image" then
      if v == nil then
        return invalid(provider, "image", "required", "missing, it is required")
      end
      local desc, ierr = images.resolve(provider, v, { upload = out.upload })
      if not desc then return nil, ierr end
      out.image = desc
    elseif field == "prompt" then
      if v == nil or (rule.required and v == "") then
        if rule.required then
          return invalid(provider, "prompt", "required",
            v == nil and "missing, it is required" or "empty, it is required")
        end
      else
        local max = model_rules and model_rules.prompt_max or spec.prompt_max
        local ok, perr = check_text(provider, "prompt", v, max)
        if not ok then return nil, perr end
      end
    elseif field ~= "model" and v ~= nil then
      local ok, verr = check_value(provider, field, rule, v)
      if not ok then return nil, verr end
      if field == "duration" or (field == "resolution" and out.duration == nil) then
        if model_rules then
          local ok2, derr = check_duration_resolution(provider, model_rules, out.model, out)
          if not ok2 then return nil, derr end
        end
      end
    end
  end
  -- Whole numbers stay integers on 5.4 (cjson would print 5.0 otherwise).
  for _, field in ipairs({ "seed", "duration", "wm_position" }) do
    if out[field] ~= nil then out[field] = math.floor(out[field]) end
  end
  return out
end

return validate
