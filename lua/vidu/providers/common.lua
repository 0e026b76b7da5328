--- Small helpers the provider drivers share: reading decoded JSON defensively, URLs, and the
-- error values drivers build from provider answers.
local json = require("vidu.json")
local errors = require("vidu.errors")
local http = require("vidu.http")

local common = {}

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

--- Percent-encodes a string for a query parameter value (RFC 3986 unreserved kept).
function common.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

--- Appends "k=v" to a URL's query, with '?' or '&' as the URL needs.
function common.add_query(url, kv)
  local sep = url:find("?", 1, true) and "&" or "?"
  return url .. sep .. kv
end

--- The base URL without a trailing slash.
function common.trim_slash(s)
  return (s:gsub("/+$", ""))
end

--- True for an absolute http(s) URL (what we accept from a provider's answer before we send
-- our key to it).
common.is_http_url = http.is_url

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

--- The error for a submit whose answer we could not read: the request reached the provider,
-- so a task may exist (and cost money) without us knowing its id.
function common.uncertain(provider, message, resp)
  return errors.new{
    kind = "uncertain", provider = provider, may_exist = true, status = resp and resp.status,
    message = message .. "; the task may have been created, check the provider's dashboard",
  }
end

--- Copies into `err` a known task id, so a failed submit never loses a paid task.
function common.with_task_id(err, id)
  if type(err) == "table" and id and err.task_id == nil then err.task_id = id end
  return err
end

--- Gives an HTTP error the kind its provider code means: a moderation code makes it
-- "moderated" (the runtime maps by HTTP status only). Returns err.
function common.refine(err, moderated)
  if type(err) == "table" and err.code ~= nil and moderated[err.code] then
    err.kind = "moderated"
  end
  return err
end

--- Raises unless every key of `opts` is in `allowed` (re-attach options are few; a typo
-- should not pass silently).
function common.check_attach(provider, id, opts, allowed)
  if type(id) ~= "string" or id == "" then
    error("vidu " .. provider .. ": task id must be a non-empty string", 0)
  end
  if opts == nil then return end
  if type(opts) ~= "table" then error("vidu " .. provider .. ": attach options must be a table", 0) end
  for k in pairs(opts) do
    if not (allowed and allowed[k]) then
      error("vidu " .. provider .. ": unknown re-attach option '" .. tostring(k) .. "'", 0)
    end
  end
end

--- The attach of a provider whose URLs are built from the task id alone (Vidu, the relay,
-- WaveSpeed, Vtrix): re-attaching needs nothing but the id.
function common.attach_by_id(provider)
  return function(_, id, opts)
    common.check_attach(provider, id, opts)
    return { id = id, status = "queued" }
  end
end

--- The first element of a JSON array, when it is one.
function common.first(v)
  v = common.tab(v)
  return v and v[1]
end

return common
