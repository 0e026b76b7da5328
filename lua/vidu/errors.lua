--- Error values: what the world did wrong, as a table with a kind and a readable message.
--
-- A failure caused by the network, a provider or a file comes back as `nil, err` where `err`
-- is made here. A programmer's mistake raises with error() instead and never reaches this
-- module. Messages never carry an API key: errors built from provider answers are passed
-- through `errors.redact` with the key before they leave the client.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local errors = {}

--- The kinds an error can have, with what they mean (documentation and a guard for typos).
errors.kinds = {
  invalid = "a parameter has a bad value (see field and limit)",
  image = "an image could not be read or is not supported",
  auth = "the provider refused the credentials (HTTP 401/403)",
  rate_limited = "the provider asked us to slow down (HTTP 429)",
  http = "the provider answered with another HTTP error",
  provider = "the provider reported an error inside a successful HTTP answer",
  network = "the connection failed (refused, reset, name lookup, TLS, protocol)",
  timeout = "something took longer than allowed",
  failed = "the generation failed on the provider's side",
  moderated = "the provider's content moderation refused the input or the output",
  canceled = "the task or the transfer was canceled",
  uncertain = "a submit was sent but its outcome is unknown: the task may exist",
  unsupported = "the provider cannot do this (for example cancel a task)",
  expired = "a media link expired or is gone (pre-signed links last hours): poll for a fresh one",
  quota = "the account's balance, credits or quota does not allow this",
  io = "a local file could not be opened, written or renamed",
  webhook = "a webhook or callback failed verification (code: missing_header, bad_header, "
    .. "stale_timestamp, bad_signature, unknown_key or jwks_unavailable)",
}

local Error = {}
Error.__index = Error

-- The fields errors.new copies; anything else is a programmer's mistake.
local FIELDS = {
  kind = true, message = true, provider = true, status = true, code = true, retryable = true,
  field = true, limit = true, task_id = true, may_exist = true, request_id = true,
  retry_after = true, cause = true, url = true, sent = true, handle = true,
}

--- Formats an error as "vidu: fal: rate_limited (HTTP 429, code X): message".
function Error.__tostring(err)
  local head = "vidu: "
  if err.provider then head = head .. tostring(err.provider) .. ": " end
  head = head .. tostring(err.kind)
  local details = {}
  if err.status then details[#details + 1] = "HTTP " .. tostring(err.status) end
  if err.code ~= nil and err.code ~= "" then details[#details + 1] = "code " .. tostring(err.code) end
  if err.field then details[#details + 1] = "field " .. tostring(err.field) end
  if err.task_id then details[#details + 1] = "task " .. tostring(err.task_id) end
  if #details > 0 then head = head .. " (" .. table.concat(details, ", ") .. ")" end
  if err.message and err.message ~= "" then head = head .. ": " .. tostring(err.message) end
  return head
end

--- Builds an error table. `spec.kind` is required and must be one of errors.kinds.
-- `retryable` defaults to false; `message` defaults to the kind's description.
function errors.new(spec)
  if type(spec) ~= "table" then
    error("errors.new expects a table, got " .. type(spec), 2)
  end
  if not errors.kinds[spec.kind] then
    error("errors.new: unknown error kind " .. tostring(spec.kind), 2)
  end
  local err = {}
  for k, v in pairs(spec) do
    if not FIELDS[k] then error("errors.new: unknown field " .. tostring(k), 2) end
    err[k] = v
  end
  if err.message == nil then err.message = errors.kinds[err.kind] end
  if err.retryable == nil then err.retryable = false end
  return setmetatable(err, Error)
end

--- True when `v` is an error made by errors.new.
function errors.is(v)
  return type(v) == "table" and getmetatable(v) == Error
end

-- Escapes Lua pattern magic characters so a secret can be searched as plain text.
local function plain(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

--- Replaces every occurrence of `secret` in the error's string fields with "***".
-- Providers sometimes echo what they were sent (a bad key, a header) back in their error
-- bodies; this keeps such an echo from reaching logs. Returns err.
function errors.redact(err, secret)
  if type(secret) ~= "string" or #secret < 4 or type(err) ~= "table" then return err end
  local pat = plain(secret)
  for k, v in pairs(err) do
    if type(v) == "string" and v:find(secret, 1, true) then
      err[k] = v:gsub(pat, "***")
    end
  end
  return err
end

--- Maps an HTTP status to an error kind: 401/403 auth, 429 rate_limited, the rest http.
function errors.kind_for_status(status)
  if status == 401 or status == 403 then return "auth" end
  if status == 429 then return "rate_limited" end
  return "http"
end

return errors
