--- Small file helpers the command, the journal and the batch runner share.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local files = {}

--- `s` as one word for /bin/sh.
function files.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- The directory part of a path ("." when there is none).
function files.dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

--- True when `path` can be opened for reading.
function files.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

--- The size of the file at `path` in bytes, or nil when it cannot be opened.
function files.size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

return files
