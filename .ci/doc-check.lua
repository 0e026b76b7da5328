#!/usr/bin/env lua5.4
-- doc-check: every public function of the Lua layer has an LDoc comment (`---`).
--
--   lua5.4 .ci/doc-check.lua [file-or-dir ...]      (default: lua)
--
-- Public: a function defined at the top level of a file as a field of a table, `function
-- M.name(`, `function Class:name(` or `M.name = function`, whose last name does not start
-- with `_` (private by convention, and metamethods). Documented: the comment lines right
-- above it (no blank line between) include one that starts with `---` (not a ruler of
-- dashes), the line LDoc reads as the start of a doc comment. Lines inside long strings and
-- long comments are skipped.
-- Prints "file:line: name" for each undocumented one, then a summary line; exits 1 if any
-- (and 2 when a file cannot be read).

local function lines_of(cmd)
  local out = {}
  local p = assert(io.popen(cmd))
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The Lua files under each argument (a file stands for itself), sorted, each once.
local function files_of(args)
  local files, seen = {}, {}
  for _, a in ipairs(args) do
    local list = "if [ -d " .. quote(a) .. " ]; then find " .. quote(a) ..
      " -name '*.lua' -type f | LC_ALL=C sort; else echo " .. quote(a) .. "; fi"
    for _, f in ipairs(lines_of(list)) do
      if not seen[f] then
        seen[f] = true
        files[#files + 1] = f
      end
    end
  end
  return files
end

-- The public name a line defines, or nil.
local function public_name(line)
  local name = line:match("^function%s+([%w_]+[.:][%w_.:]+)%s*%(")
    or line:match("^([%w_]+%.[%w_.]+)%s*=%s*function[%s(]")
  if not name then return nil end
  local last = name:match("([%w_]+)$")
  if last:sub(1, 1) == "_" then return nil end
  return name
end

-- Marks the lines that lie inside a long string or a long comment (after its opening line),
-- so that text in them is never taken for a definition. Short strings holding "[[" are
-- rare enough here to ignore.
local function long_bracket_lines(lines)
  local inside, close = {}, nil
  for i, line in ipairs(lines) do
    local pos = 1
    if close then
      inside[i] = true
      local _, e = line:find(close, 1, true)
      if e then close, pos = nil, e + 1 end
    end
    while not close do
      local s, e, eq = line:find("%[(=*)%[", pos)
      if not s then break end
      local c = "]" .. eq .. "]"
      local _, ce = line:find(c, e + 1, true)
      if ce then pos = ce + 1 else close = c end
    end
  end
  return inside
end

local function documented(lines, i)
  local j = i - 1
  while j >= 1 and lines[j]:match("^%s*%-%-") do
    if lines[j]:match("^%s*%-%-%-") and not lines[j]:match("^%s*%-%-%-%-") then return true end
    j = j - 1
  end
  return false
end

local args = { ... }
if #args == 0 then args = { "lua" } end
local total, missing, nfiles = 0, 0, 0
for _, path in ipairs(files_of(args)) do
  local f, err = io.open(path, "rb")
  if not f then
    io.stderr:write("doc-check: ", tostring(err), "\n")
    os.exit(2)
  end
  local lines = {}
  for l in f:lines() do lines[#lines + 1] = l end
  f:close()
  nfiles = nfiles + 1
  local inside = long_bracket_lines(lines)
  for i, line in ipairs(lines) do
    local name = not inside[i] and public_name(line)
    if name then
      total = total + 1
      if not documented(lines, i) then
        missing = missing + 1
        io.write(path, ":", i, ": ", name, "\n")
      end
    end
  end
end
io.write(string.format("doc-check: %d public functions in %d files, %d without a doc comment\n",
  total, nfiles, missing))
os.exit(missing == 0 and 0 or 1)
