--- Parameter rules the drivers declare with: one rule per field kind, Vidu's img2video body
-- (which the relay and Vtrix take too, each without a few fields), and `rules()` which turns
-- a driver's ordered field list into the table vidu.validate checks against.
--
-- A rule: t, the Lua type ("integer" is a number checked for a whole value; "image" an image
-- input); then what constrains the value: required, min/max, above, enum, url, text (valid
-- UTF-8), max_chars, nonempty, and check = function(v) -> true | nil, limit, message for what
-- a table cannot say.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local fields = {}

--- The largest seed: Vidu's own seeds and WaveSpeed's page stay within a signed 32-bit int.
fields.INT32_MAX = 2147483647

fields.AMPLITUDES = { "auto", "small", "medium", "large" }

local F = {
  image = { t = "image", required = true },
  prompt = { t = "string", text = true },
  -- 0..2^31-1: Vidu, the relay, Vtrix and fal document no range.
  seed = { t = "integer", min = 0, max = fields.INT32_MAX },
  movement_amplitude = { t = "string", enum = fields.AMPLITUDES },
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
  model = { t = "string" },
}
fields.F = F

--- A copy of `rule` with some keys changed.
function fields.with(rule, changes)
  local r = {}
  for k, v in pairs(rule) do r[k] = v end
  for k, v in pairs(changes) do r[k] = v end
  return r
end

--- The body of Vidu's img2video, as { name, rule } in check order (the first error reported
-- is then stable).
fields.VIDU_BODY = {
  { "model", F.model }, { "prompt", F.prompt }, { "duration", F.duration },
  { "resolution", F.resolution }, { "seed", F.seed },
  { "movement_amplitude", F.movement_amplitude }, { "bgm", F.bgm }, { "payload", F.payload },
  { "off_peak", F.off_peak }, { "callback_url", F.callback_url }, { "is_rec", F.is_rec },
  { "audio", F.audio }, { "voice_id", F.voice_id }, { "watermark", F.watermark },
  { "wm_position", F.wm_position }, { "wm_url", F.wm_url }, { "meta_data", F.meta_data },
  { "upload", F.upload }, { "image", F.image },
}

--- A driver's rules: `spec` (name, prompt_max, models, default_model, image limits, max_body)
-- plus `fields` (name -> rule) and `order` built from the ordered `list`, leaving out the
-- names in `except`.
function fields.rules(list, except, spec)
  local r = {}
  for k, v in pairs(spec) do r[k] = v end
  r.fields, r.order = {}, {}
  for _, item in ipairs(list) do
    local name = item[1]
    if not (except and except[name]) then
      r.fields[name] = item[2]
      r.order[#r.order + 1] = name
    end
  end
  return r
end

return fields
