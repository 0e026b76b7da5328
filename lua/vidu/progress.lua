--- vidu.progress: what the `vidu` command shows while it works.
--
-- Three modes: "live" (a terminal: one line redrawn in place), "plain" (a line per event,
-- for logs and pipes) and "json" (one JSON object per event on stdout, for programs). The
-- command feeds it events (the client's, and the batch's own) and, in live mode, calls
-- tick() a few times a second to redraw.
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local json = require("vidu.json")

local progress = {}

local Display = {}
Display.__index = Display

--- True when file descriptor 1 is a terminal (asks the shell once: plain Lua cannot).
function progress.stdout_is_tty()
  local a, _, c = os.execute("test -t 1")
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

--- The terminal's width in columns: $COLUMNS, else what `stty size` says, else 100.
function progress.terminal_width()
  local cols = tonumber(os.getenv("COLUMNS") or "")
  if cols then return cols end
  local p = io.popen("stty size 2>/dev/null")
  if p then
    local line = p:read("*l") or ""
    p:close()
    cols = tonumber(line:match("^%d+%s+(%d+)"))
  end
  return cols or 100
end

--- "1:05" / "1:02:03" for a number of seconds.
function progress.clock(s)
  if not s or s ~= s or s < 0 then return "-" end
  s = math.floor(s + 0.5)
  local h, m = math.floor(s / 3600), math.floor(s / 60) % 60
  if h > 0 then return string.format("%d:%02d:%02d", h, m, s % 60) end
  return string.format("%d:%02d", m, s % 60)
end

--- "$1.20" for a number of USD.
function progress.usd(v)
  return string.format("$%.2f", v or 0)
end

local function mb(bytes)
  return string.format("%.1f MB", (bytes or 0) / 1e6)
end

--- A display. opts: mode ("live" | "plain" | "json"), out (a file, default io.stdout),
-- clock (a function returning seconds), width (columns, default the terminal's in live mode).
function progress.new(opts)
  local self = setmetatable({
    mode = opts.mode, out = opts.out or io.stdout, clock = opts.clock,
    width = opts.width or (opts.mode == "live" and progress.terminal_width()) or 100,
    started = opts.clock(), drawn = false,
  }, Display)
  return self
end

--- Seconds since the display started.
function Display:elapsed()
  return self.clock() - self.started
end

--- Writes a whole line (clearing a live line first).
function Display:line(text)
  if self.mode == "json" then return end
  if self.drawn then self.out:write("\r\27[K") self.drawn = false end
  self.out:write(text, "\n")
  self.out:flush()
end

--- Shows a status line: redrawn in place in live mode, ignored otherwise.
function Display:status(text)
  if self.mode ~= "live" then return end
  if #text > self.width - 1 then
    -- Cut on a character boundary (the separators are two-byte UTF-8).
    local cut = self.width - 4
    while cut > 0 and text:byte(cut + 1) and text:byte(cut + 1) >= 0x80 and text:byte(cut + 1) < 0xC0 do
      cut = cut - 1
    end
    text = text:sub(1, cut) .. "..."
  end
  self.out:write("\r\27[K", text)
  self.out:flush()
  self.drawn = true
end

--- Ends the live line (before the final report).
function Display:close()
  if self.drawn then self.out:write("\r\27[K") self.out:flush() self.drawn = false end
end

--- Writes one JSON object (json mode only). The fields are plain values, never a task or a
-- client (nothing that could carry a key).
function Display:json(obj)
  if self.mode ~= "json" then return end
  obj.t = math.floor(self:elapsed() * 1000 + 0.5) / 1000
  self.out:write(json.encode(obj), "\n")
  self.out:flush()
end

--- A client event (optionally of a batch item) as a plain table for --json.
function progress.event_fields(ev)
  local o = { type = ev.type, provider = ev.provider, status = ev.status }
  if ev.task then
    o.id = ev.task.id
    o.queue_position = ev.task.queue_position
    o.progress = ev.task.progress
    if ev.type == "finished" then
      o.video_url, o.cost = ev.task.video_url, ev.task.cost
    end
  end
  if ev.handle and ev.type == "submitted" then o.handle = ev.handle end
  if ev.error then
    o.error = tostring(ev.error.message or ev.error)
    o.error_kind = ev.error.kind
    o.may_exist = ev.error.may_exist
  end
  if ev.path then o.path = ev.path end
  if ev.item then
    o.index, o.key = ev.item.index, ev.item.key
  end
  return o
end

--- The live line of one task: status, queue position, elapsed, ETA, download progress.
function progress.task_line(t)
  local parts = { t.provider .. " " .. (t.id or "submitting") .. ":", t.status or "sending" }
  if t.queue_position then parts[#parts + 1] = "#" .. tostring(t.queue_position) .. " in queue" end
  if t.progress then parts[#parts + 1] = string.format("%d%%", t.progress) end
  parts[#parts + 1] = progress.clock(t.elapsed)
  if t.eta then parts[#parts + 1] = "ETA " .. progress.clock(t.eta) end
  if t.bytes then
    local pct = t.total and t.total > 0 and string.format(" %d%%", math.floor(100 * t.bytes / t.total)) or ""
    parts[#parts + 1] = "downloading" .. pct .. " " .. mb(t.bytes) ..
      (t.total and t.total > 0 and (" of " .. mb(t.total)) or "")
  end
  return table.concat(parts, " · ")
end

return progress
