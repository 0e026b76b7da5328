--- Vtrix (cloud.vtrix.ai, run by SeaArt) for viduq1_img2video.
--
-- Bearer auth; the body wraps the model's fields as {"model": ..., "input": [{"params": {...}}]}
-- (the CLI and real user code; whether a flat body works is unconfirmed). The submit answer
-- is a task object whose id is `id` (some pages say `task_id`: both are read). Statuses are
-- in_progress|pending|processing|completed|failed; anything else is taken as still running.
-- The video is at output[0].content[0].url and usage.cost (USD, a string) becomes task.cost.
-- No upload API (local images go inline, the POST body must stay under 20 MB) and no cancel.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local images = require("vidu.images")
local url = require("vidu.url")
local fields = require("vidu.providers.fields")
local models = require("vidu.providers.vidu_models")
local common = require("vidu.providers.common")

local str, tab, first = common.str, common.tab, common.first
local MB = 1000 * 1000

local vtrix = common.driver("vtrix")
vtrix.poll_defaults = { first = 2, max = 15, factor = 1.5 }

--- What Vtrix takes (doc.vtrix.ai's viduq1 page): Vidu's body less meta_data, prompts up to
-- 2000 characters, the whole POST body under 20 MB (decimal), so inline images stay under
-- 14 MB decoded (18.7 MB of base64) leaving room for the other fields.
vtrix.rules = fields.rules(fields.VIDU_BODY, { meta_data = true }, {
  name = "vtrix", prompt_max = 2000, models = models.vtrix, default_model = "viduq1_img2video",
  image = { max_bytes = 50 * MB, inline_below = 14 * MB, can_upload = false },
  max_body = 20 * MB,
})

local STATES = {
  pending = "queued", queued = "queued",
  in_progress = "running", processing = "running", running = "running",
  completed = "succeeded", succeeded = "succeeded",
  failed = "failed",
  canceled = "canceled", cancelled = "canceled",
}

-- The model's error codes (seed page). The codes are not in any other public source.
local CODES = {
  [8008003001] = "missing image",
  [8008003002] = "invalid parameter value",
  [8008003003] = "invalid style",
  [8008003004] = "invalid image",
  [8008003098] = "generation failed",
  [8008003099] = "provider unavailable",
}

--- The Authorization header value.
function vtrix.auth_header(key)
  return "Bearer " .. key
end

-- A code as the pages print it: numbers on the viduq1 page, strings ("002014001") on the
-- Veo and domestic pages; both read the same.
local function code_num(code)
  if type(code) == "string" and code:match("^%d+$") then return tonumber(code) end
  return code
end

--- Reads a Vtrix error body: {"message": ...}, {"error": "..."} or {"error": {code, message}}.
-- A 403 is "insufficient balance or permission" (Vtrix's error table): kind quota, unless the
-- body says the key itself is wrong.
function vtrix.parse_error(resp)
  local out = {}
  local j = tab(resp and resp.json)
  if j then
    local e = j.error
    if tab(e) then
      out.code = e.code
      out.message = str(e.message) or str(e.error_message)
    else
      out.message = str(e)
    end
    out.message = out.message or str(j.message) or str(j.msg)
    if out.code == nil and j.code ~= nil and j.code ~= 0 and j.code ~= 200 then
      out.code = j.code
    end
  end
  if not out.message then out.message = common.excerpt(resp and resp.body) end
  if resp and resp.status == 403 then
    local m = (out.message or ""):lower()
    if not (m:find("key", 1, true) or m:find("token", 1, true) or m:find("unauthor", 1, true)) then
      out.kind = "quota"
    end
  end
  return out
end

-- The fields that go into input[0].params as given (validated).
local PARAMS = {
  "prompt", "audio", "voice_id", "is_rec", "bgm", "duration", "seed", "resolution",
  "movement_amplitude", "payload", "off_peak", "watermark", "wm_position", "wm_url",
  "callback_url",
}

-- The error of a failed task: error{code, message|error_message}. Vtrix documents no
-- moderation code: a refusal arrives as 8008003098 "generation failed" whose text names the
-- moderation, so the text decides.
local function task_error(j)
  local e = tab(j.error) or {}
  local code = e.code
  if code == 0 then code = nil end
  local msg = str(e.message) or str(e.error_message) or str(j.error)
  local known = CODES[code_num(code)]
  local kind = "failed"
  local lower = (msg or ""):lower()
  if lower:find("moderat", 1, true) or lower:find("nsfw", 1, true)
    or lower:find("sensitive", 1, true) or lower:find("content policy", 1, true) then
    kind = "moderated"
  end
  -- The label adds nothing where it only repeats "generation failed".
  if known == CODES[8008003098] then known = nil end
  local detail = known and msg and (known .. ": " .. msg) or known or msg
  return { kind = kind, code = code, message = detail,
    retryable = code_num(code) == 8008003099 or nil }
end

-- Some gateways wrap the task in {"data": {...}}; read either.
local function unwrap(j)
  if j and tab(j.data) and (j.id == nil and j.task_id == nil) then return j.data end
  return j
end

--- Reads a task object (a submit or poll answer, wrapped in {data} or not) into an
-- observation; nil when it is not a JSON object.
function vtrix.read(j)
  j = unwrap(tab(j))
  if not j then return nil end
  local o = tab(first(j.output))
  local c = o and tab(first(o.content))
  local usage = tab(j.usage)
  local obs = {
    raw = j, video_url = c and str(c.url), cost = usage and common.number(usage.cost),
    progress = common.number(j.progress), status = STATES[str(j.status) or ""],
  }
  if obs.status == "failed" then obs.error = task_error(j) end
  return obs
end

--- Reads a callback body (the task object) -> observation, id.
function vtrix.read_callback(j)
  local obs = vtrix.read(j)
  local t = obs and obs.raw
  return obs, t and (common.id(t.id) or common.id(t.task_id))
end

--- Submits: POST /model/v1/generation with {"model":..., "input":[{"params":{...}}]}.
function vtrix.submit(client, p)
  local image, ierr = images.field(client, "vtrix", p.image, nil)
  if not image then return nil, ierr end
  local params = { images = { image } }
  for _, k in ipairs(PARAMS) do
    if p[k] ~= nil then params[k] = p[k] end
  end
  local resp, err = client:request{
    method = "POST", path = "/model/v1/generation", idempotent = false,
    -- Encoded once a connection slot is granted (vidu.http): a queued submit holds no body.
    json = function() return { model = p.model, input = { { params = params } } } end,
    elide_data_uris = common.ECHO_MAX, -- an inline image echoed back is cut in C
  }
  if not resp then return nil, err end
  local j = unwrap(tab(resp.json))
  if not j then return nil, common.uncertain("vtrix", "the submit answer is not JSON", resp) end
  local id = common.id(j.id) or common.id(j.task_id)
  if not id then
    local pe = vtrix.parse_error(resp)
    return common.no_task_id("vtrix", resp, "id",
      pe.code ~= nil or (tab(resp.json) and resp.json.error ~= nil), pe.code, pe.message)
  end
  return { id = id, model = p.model }, vtrix.read(j)
end

--- Polls GET /model/v1/generation/task/{id}.
function vtrix.poll(client, task)
  return common.poll_json(client, task, {
    method = "GET", path = "/model/v1/generation/task/" .. url.encode(task.id),
    idempotent = true,
  }, vtrix.read)
end

return vtrix
