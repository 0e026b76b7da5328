--- URL helpers: the one strict http(s) check every layer makes before it sends anything (or a
-- key) to a URL, origins, joining, and query strings. Pure functions, no I/O.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local url = {}

--- True when `s` is an absolute http(s) URL with a host and no whitespace or control bytes.
function url.is_url(s)
  if type(s) ~= "string" or s:find("[%s%c]") then return false end
  local scheme, host = s:match("^(%a[%w+.-]*)://([^/?#]+)")
  if not scheme then return false end
  scheme = scheme:lower()
  return (scheme == "http" or scheme == "https") and host ~= ""
end

--- The "scheme://host[:port]" part of an absolute http(s) URL (lower-cased), or nil.
function url.origin(s)
  local o = type(s) == "string" and s:match("^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+")
  return o and o:lower() or nil
end

--- True when an absolute URL carries credentials (scheme://user[:password]@host).
function url.userinfo(s)
  local authority = type(s) == "string" and s:match("^%a[%w+.-]*://([^/?#]*)")
  return authority ~= nil and authority:find("@", 1, true) ~= nil
end

-- Query parameters whose values are credentials (pre-signed links, tokens).
local SECRET_PARAM = { sig = true, signature = true, token = true, key = true, auth = true,
  credential = true, expires = false, policy = true, ["x-amz-signature"] = true,
  ["x-amz-credential"] = true, ["x-amz-security-token"] = true, ["x-goog-signature"] = true }

--- The URL as it may be shown in a log line: no user:password@, and the values of query
-- parameters that are credentials (sig, signature, token, key, X-Amz-Signature, ...) as ***.
function url.loggable(s)
  if type(s) ~= "string" then return tostring(s) end
  s = s:gsub("^(%a[%w+.-]*://)[^/?#@]*@", "%1")
  local base, query = s:match("^([^?]*)%?(.*)$")
  if not base then return s end
  query = query:gsub("([^&=]+)=([^&]*)", function(k, v)
    if SECRET_PARAM[k:lower()] then return k .. "=***" end
    return k .. "=" .. v
  end)
  return base .. "?" .. query
end

--- Joins a base URL and a path with exactly one slash between them.
function url.join(base, path)
  if path == "" then return base end
  if base:sub(-1) == "/" then base = base:sub(1, -2) end
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  return base .. path
end

--- The URL without trailing slashes.
function url.trim_slash(s)
  return (s:gsub("/+$", ""))
end

--- Percent-encodes a string for a path segment or a query value (RFC 3986 unreserved kept).
function url.encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

--- Appends "k=v" (already encoded) to a URL's query, with '?' or '&' as the URL needs.
function url.add_query(s, kv)
  local sep = s:find("?", 1, true) and "&" or "?"
  return s .. sep .. kv
end

return url
