--- Server-sent events (the text/event-stream format of the WHATWG HTML standard, section
-- "Server-sent events"), read incrementally: bytes go in as they arrive, whole events come
-- out. Pure: no I/O.
--
-- Lines end with CRLF, LF or CR. A line starting with ':' is a comment; "name: value" sets a
-- field (one space after the colon is dropped; a line without a colon is a field with an
-- empty value). data lines of one event are joined with "\n"; a blank line ends the event,
-- and an event without data is not dispatched. Fields other than data, event and id are
-- ignored, as the standard says.
--
-- Memory is bounded: the bytes held for an event not yet complete (its partial line and its
-- data so far) may not exceed `max` (default 1 MiB); a stream that goes past it (an event
-- that never ends) is refused with an error rather than kept.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local sse = {}

local DEFAULT_MAX = 1024 * 1024

local Parser = {}
Parser.__index = Parser

--- A parser holding at most `max` bytes of an incomplete event (default 1 MiB).
function sse.parser(max)
  return setmetatable({ max = max or DEFAULT_MAX, buf = "", data = nil, held = 0,
    event = nil, id = nil, started = false }, Parser)
end

-- Applies one line (without its end) to the event being built; dispatches on a blank line.
function Parser:_line(line, out)
  if line == "" then
    local d = self.data
    if d then
      -- One data line (the usual event) is kept as its string; more as a list.
      if type(d) == "table" then d = table.concat(d, "\n") end
      out[#out + 1] = { data = d, event = self.event, id = self.id }
    end
    self.data, self.event, self.held = nil, nil, 0
    return
  end
  if line:byte(1) == 58 then return end -- ':' a comment (a keep-alive)
  local colon = line:find(":", 1, true)
  local name, value
  if colon then
    name = line:sub(1, colon - 1)
    -- One space after the colon is not part of the value.
    value = line:sub(line:byte(colon + 1) == 32 and colon + 2 or colon + 1)
  else
    name, value = line, ""
  end
  if name == "data" then
    local d = self.data
    if d == nil then
      self.data = value
    elseif type(d) == "string" then
      self.data = { d, value }
    else
      d[#d + 1] = value
    end
    self.held = self.held + #value + 1
  elseif name == "event" then
    self.event = value
  elseif name == "id" and not value:find("\0", 1, true) then
    self.id = value
  end
end

--- True when the bytes fed so far ended on an event's end: nothing is held.
function Parser:idle()
  return self.buf == "" and self.data == nil
end

--- Feeds bytes that arrived: a list of the events they completed ({ data, event, id }) |
-- nil, err when the incomplete event would exceed the bound.
function Parser:feed(bytes)
  local buf = self.buf .. bytes
  if not self.started and #buf > 0 then
    -- A UTF-8 byte order mark may open the stream.
    if buf:sub(1, 3) == "\239\187\191" then buf = buf:sub(4) end
    if #buf >= 3 or buf ~= ("\239\187\191"):sub(1, #buf) then self.started = true end
  end
  local out = {}
  local pos, n = 1, #buf
  while pos <= n do
    local at = buf:find("[\r\n]", pos)
    if not at then break end
    local stop = at + 1
    if buf:byte(at) == 13 then
      -- CR: a CRLF may be split across two feeds; wait for the next byte to know.
      if at == n then break end
      if buf:byte(at + 1) == 10 then stop = at + 2 end
    end
    self:_line(buf:sub(pos, at - 1), out)
    pos = stop
  end
  self.buf = pos > n and "" or buf:sub(pos)
  if self.held + #self.buf > self.max then
    return nil, string.format("an event of the stream exceeds %d bytes without ending", self.max)
  end
  return out
end

return sse
