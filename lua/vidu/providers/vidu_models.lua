--- Vidu's image-to-video models: for each, the durations it makes, the resolutions it offers
-- and its default, and its prompt limit. One table for the official API and Vidu-compatible
-- gateways (which pass the model through), Vtrix's and WaveSpeed's model ids; the client's
-- validation and the emulator both read it.
--
-- A model is either
--   { durations = { 4, 8 }, default_duration, resolutions = { [d] = { default, others... } } }
-- or
--   { duration_range = { lo, hi }, default_duration, any_resolution = { ... },
--     default_resolution }
-- with prompt_max (characters) and legacy = true for a model Vidu no longer lists.
--
-- Sources and decisions (checked 2026-12-02 against the providers audit, items V2, V3, R2):
-- * the list is platform.vidu.cn's image-to-video page (notes of 2026-04-21) and octopusx's
--   "official format" mirror: viduq3-pro, viduq3-turbo, viduq3-pro-fast, viduq2-pro,
--   viduq2-turbo, viduq2-pro-fast, viduq1, viduq1-classic, vidu2.0. vidu1.5 is no longer
--   listed; it stays accepted as legacy (older accounts and gateways still take it);
-- * viduq1 and viduq1-classic: 5 s at 1080p; vidu2.0 and vidu1.5: 4 s at 360p (default),
--   720p or 1080p, 8 s at 720p; prompts up to 1500 characters (platform.vidu.com);
-- * Q2: 1..10 s, prompts up to 2000; pro and turbo at 540p/720p/1080p (default 720p), pro-fast
--   at 720p/1080p only (novita, ComfyUI's nodes_vidu.py, modelverse);
-- * Q3: 1..16 s, prompts up to 5000, 540p/720p/1080p (default 720p); pro-fast refuses 540p in
--   practice (400 FieldInvalid: resolution), so it takes 720p/1080p here;
-- * default durations: 5 s for Q2 and Q3 (the pages' examples), the only or first duration
--   elsewhere. movement_amplitude is accepted for every model (Vidu ignores it on Q2/Q3).
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local models = {}

local Q1 = {
  durations = { 5 }, default_duration = 5, resolutions = { [5] = { "1080p" } }, prompt_max = 1500,
}
local V2 = {
  durations = { 4, 8 }, default_duration = 4, prompt_max = 1500,
  resolutions = { [4] = { "360p", "720p", "1080p" }, [8] = { "720p" } },
}
local V15 = {
  durations = V2.durations, default_duration = 4, prompt_max = 1500, legacy = true,
  resolutions = V2.resolutions,
}

local function ranged(lo, hi, resolutions, prompt_max)
  return {
    duration_range = { lo, hi }, default_duration = 5, any_resolution = resolutions,
    default_resolution = "720p", prompt_max = prompt_max,
  }
end
local ALL = { "540p", "720p", "1080p" }
local FAST = { "720p", "1080p" }

-- Vidu's official API (and gateways, which pass the model through).
models.vidu = {
  ["viduq3-pro"] = ranged(1, 16, ALL, 5000),
  ["viduq3-turbo"] = ranged(1, 16, ALL, 5000),
  ["viduq3-pro-fast"] = ranged(1, 16, FAST, 5000),
  ["viduq2-pro"] = ranged(1, 10, ALL, 2000),
  ["viduq2-turbo"] = ranged(1, 10, ALL, 2000),
  ["viduq2-pro-fast"] = ranged(1, 10, FAST, 2000),
  viduq1 = Q1,
  ["viduq1-classic"] = Q1,
  ["vidu2.0"] = V2,
  ["vidu1.5"] = V15,
}

-- Vidu-compatible gateways: the same models (they pass Vidu's body through).
models.relay = models.vidu

-- Vtrix's model id for viduq1 (its prompt limit is Vtrix's own, 2000).
models.vtrix = {
  viduq1_img2video = { durations = Q1.durations, default_duration = 5, resolutions = Q1.resolutions },
}

-- WaveSpeed's model path for Vidu 2.0 (durations only; it takes no resolution).
models.wavespeed = {
  ["vidu/image-to-video-2.0"] = { durations = { 4, 8 }, default_duration = 4, prompt_max = 1500 },
}

--- The default resolution of `m` at duration `d` (its default duration when nil), or nil.
function models.default_resolution(m, d)
  if m.any_resolution then return m.default_resolution or m.any_resolution[1] end
  local list = m.resolutions and m.resolutions[d or m.default_duration]
  return list and list[1]
end

return models
