--- Vidu's image-to-video models: for each, the durations it makes and, per duration, the
-- resolutions it offers (the first one is the provider's default), and its prompt limit when
-- it differs from the provider's. One table for the official API, the relay, Vtrix's and
-- WaveSpeed's model ids; the emulator reads it too.
--
-- A model is either { durations = {...}, default_duration, resolutions = { [d] = {...} } }
-- or { duration_range = { lo, hi }, default_duration, any_resolution = {...} }.
local models = {}

-- platform.vidu.com/docs/image-to-video: viduq1 5 s at 1080p; vidu2.0 and vidu1.5 4 s at
-- 360p/720p/1080p or 8 s at 720p.
local Q1 = { durations = { 5 }, default_duration = 5, resolutions = { [5] = { "1080p" } } }
local V2 = {
  durations = { 4, 8 }, default_duration = 4,
  resolutions = { [4] = { "360p", "720p", "1080p" }, [8] = { "720p" } },
}
-- viduq2-pro and viduq2-turbo (relay pages, third-party documented): 1..10 s at 540p, 720p
-- or 1080p, prompts up to 2000 characters (the newer Vidu pages and every mirror agree).
local Q2 = {
  duration_range = { 1, 10 }, default_duration = 5,
  any_resolution = { "540p", "720p", "1080p" }, prompt_max = 2000,
}

--- Vidu's official API.
models.vidu = { viduq1 = Q1, ["vidu2.0"] = V2, ["vidu1.5"] = V2 }

--- Vidu-compatible gateways: Vidu's models plus the ones relays list (viduq1-classic is
-- taken as viduq1).
models.relay = {
  viduq1 = Q1, ["vidu2.0"] = V2, ["vidu1.5"] = V2,
  ["viduq1-classic"] = Q1, ["viduq2-pro"] = Q2, ["viduq2-turbo"] = Q2,
}

--- Vtrix's model id for viduq1.
models.vtrix = { viduq1_img2video = Q1 }

--- WaveSpeed's model path for Vidu 2.0 (durations only; it takes no resolution).
models.wavespeed = {
  ["vidu/image-to-video-2.0"] = { durations = { 4, 8 }, default_duration = 4 },
}

return models
