--- What the provider drivers share: the driver's base table from the registry, reading
-- decoded JSON defensively, and the error values drivers build from provider answers.
--
-- The driver contract (each file in this folder returns one such table):
--   name, env_key, default_base_url   from the registry (vidu.providers)
--   rules                             fields, models, limits and image limits (vidu.validate
--                                     and vidu.images check against them)
--   poll_defaults                     task:wait's schedule { first, max, factor }
--   attach_options                    re-attach options a bare id may take (name -> type)
--   auth_header(key)                  the Authorization header value
--   parse_error(resp)                 an error answer -> { code, message, kind, retryable }
--   submit(client, params)            -> handle, observation | nil, err
--   poll(client, task)                -> observation | nil, err
--   read(json)                        a task answer -> observation; pure, no I/O
--   read_callback(json)               a callback body -> observation, task id; pure
--   cancel(client, task)              -> true (or an observation) | nil, err; optional
--   follow(client, task, on_obs, deadline, events)
--                                     follows the task on a push channel (fal's status
--                                     stream), handing each observation to on_obs (the task
--                                     applies it); returns how it ended: "finished",
--                                     "refused", "broken" (, err), "deadline" or "event";
--                                     optional (task:wait polls without it)
--   attach(client, handle)            -> handle, filled in for a bare id; optional
-- An observation is { status, video_url, cover_url, cost, queue_position, logs, progress,
-- error = { kind, code, message, retryable }, raw, extra }: what the provider said, never a
-- decision; Task:apply decides.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local json = require("vidu.json")
local errors = require("vidu.errors")
local registry = require("vidu.providers")

local common = {}

--- A driver's base table: its registry entry's name, env_key and default_base_url.
function common.driver(name)
  local entry = assert(registry.get(name), name)
  return { name = entry.name, env_key = entry.env_key, default_base_url = entry.default_base_url }
end

--- `v` when it is a non-empty string, else nil (decoded JSON null, numbers and "" are nil).
function common.str(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

--- `v` as an id string: strings as they are, whole numbers printed without exponent.
function common.id(v)
  if type(v) == "string" and v ~= "" then return v end
  if type(v) == "number" and v % 1 == 0 then return string.format("%.0f", v) end
  return nil
end

--- `v` when it is a table (decoded JSON object or array), else nil.
function common.tab(v)
  if type(v) == "table" and v ~= json.null then return v end
  return nil
end

-- Whole numbers as integers: cjson decodes every JSON number as a float on Lua 5.3+, and a
-- cost of "25.0" credits or queue position "3.0" reads oddly when printed.
local function whole(n)
  if n and n == n and n % 1 == 0 and n > -2^53 and n < 2^53 then return math.floor(n) end
  return n
end

--- A number from a number or a numeric string ("0.40"), else nil; whole values as integers.
function common.number(v)
  if type(v) == "number" then return whole(v) end
  if type(v) == "string" then return whole(tonumber(v)) end
  return nil
end

--- The first element of a JSON array, when it is one.
function common.first(v)
  v = common.tab(v)
  return v and v[1]
end

--- A short, printable excerpt of a body for error messages.
function common.excerpt(body)
  if type(body) ~= "string" or body == "" then return nil end
  local s = body:gsub("%s+", " ")
  if #s > 200 then s = s:sub(1, 200) .. "..." end
  return s
end

--- An error of kind "provider" (a 2xx answer we cannot use).
function common.provider_error(provider, message, extra)
  local spec = { kind = "provider", provider = provider, message = message }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return errors.new(spec)
end

--- The error of a poll answer that is not what the provider documents: worth another poll.
function common.bad_answer(provider, what, resp, task)
  return common.provider_error(provider, what,
    { status = resp.status, retryable = true, task_id = task.id })
end

--- The error for a submit whose answer we could not read: the request reached the provider,
-- so a task may exist (and cost money) without us knowing its id.
function common.uncertain(provider, message, resp)
  return errors.new{
    kind = "uncertain", provider = provider, may_exist = true, status = resp and resp.status,
    message = message .. "; the task may have been created, check the provider's dashboard",
  }
end

--- The end of a submit whose answer carries no task id: a refusal the provider stated inside
-- a 2xx (`refused`: no task was made, nothing may exist) or an answer we cannot read (a task
-- may exist). `what` names the missing field. Returns nil, err.
function common.no_task_id(provider, resp, what, refused, code, message)
  if refused then
    return nil, common.provider_error(provider, message or "submit refused",
      { code = code, status = resp.status })
  end
  return nil, common.uncertain(provider, "the submit answer has no " .. what, resp)
end

--- Submit answers that echo an inline image back (Vidu's create answer does) have their
-- data: URIs over this many bytes cut by the engine before they are Lua strings
-- (client:request's elide_data_uris); task.raw drops the ones other answers carry at the same
-- limit (vidu.task).
common.ECHO_MAX = require("vidu.task").ECHO_MAX

--- Copies into `err` a known task id, so a failed submit never loses a paid task.
function common.with_task_id(err, id)
  if type(err) == "table" and id and err.task_id == nil then err.task_id = id end
  return err
end

--- Performs a GET of a task answer and reads it with `read` (decoded JSON -> observation,
-- or nil when the answer is not the documented shape): observation | nil, err.
function common.poll_json(client, task, spec, read)
  local resp, err = client:request(spec)
  if not resp then return nil, err end
  local obs = read(resp.json, resp)
  if not obs then
    return nil, common.bad_answer(client.provider, "the task answer is not the documented JSON",
      resp, task)
  end
  return obs
end

return common
