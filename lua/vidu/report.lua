--- vidu.report: the contact sheet of a batch, DIR/index.html.
--
-- One static page beside the videos: every item of DIR/results.jsonl in a grid laid out along
-- the plan's axes (DIR/plan.json: by default the varying ones of provider, model, image and
-- prompt as rows, of duration, seed and motion as columns), each video playing muted in a
-- loop, a filter per varying parameter and per status (also read from the address:
-- index.html#seed=2&motion=small), failed items with their error. No
-- server and no network: the page links only to the videos beside it.
--
-- When every video has loaded or failed, the page writes the count into
-- <output id="media-status" data-done="1" data-loaded="N" data-failed="M" data-total="T">,
-- so a headless browser's DOM dump can tell whether the media played (the spec does).
if jit then jit.off(true, true) end -- LuaJIT runs this module interpreted (see vidu/init.lua)
local json = require("vidu.json")
local prices = require("vidu.prices")

local report = {}

local ROW_AXES = { provider = true, model = true, image = true, prompt = true }
local ORDER = { "provider", "model", "image", "prompt", "duration", "seed", "motion" }

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;",
  }))
end

-- The results, one per item: a line appended later for the same item (a batch appends as
-- items finish) replaces the earlier one. In item order.
local function read_lines(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local out, at = {}, {}
  for line in f:lines() do
    local v = json.decode(line)
    if type(v) == "table" then
      local id = v.index or v.key
      if id ~= nil and at[id] then
        out[at[id]] = v
      else
        out[#out + 1] = v
        if id ~= nil then at[id] = #out end
      end
    end
  end
  f:close()
  table.sort(out, function(a, b) return (tonumber(a.index) or 0) < (tonumber(b.index) or 0) end)
  return out
end

local function read_json(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local v = json.decode(f:read("*a"))
  f:close()
  return type(v) == "table" and v or nil
end

-- A short label of an axis value for a header or a caption.
local function label(axis, v)
  if v == nil then return "" end
  v = tostring(v)
  if axis == "image" then v = v:match("([^/]+)$") or v end
  if #v > 70 then v = v:sub(1, 67) .. "..." end
  return v
end

-- The values of each axis as they appear in the results (plan order when plan.json has it).
local function axis_values(results, planj)
  local values, seen = {}, {}
  for _, name in ipairs(ORDER) do
    values[name], seen[name] = {}, {}
    local from_plan = planj and planj.axes and planj.axes[name]
    if type(from_plan) == "table" then
      for _, v in ipairs(from_plan) do
        if not seen[name][tostring(v)] then
          seen[name][tostring(v)] = true
          values[name][#values[name] + 1] = v
        end
      end
    end
    for _, r in ipairs(results) do
      local v = r.axes and r.axes[name]
      if v ~= nil and not seen[name][tostring(v)] then
        seen[name][tostring(v)] = true
        values[name][#values[name] + 1] = v
      end
    end
  end
  return values
end

--- The grid's axes: rows, columns (lists of axis names) for these results and plan.
function report.layout(results, planj)
  local values = axis_values(results, planj)
  local layout = planj and planj.layout
  local varying = {}
  for _, name in ipairs(ORDER) do
    if #values[name] > 1 then varying[#varying + 1] = name end
  end
  local rows, cols = {}, {}
  if layout and (layout.rows or layout.columns) then
    rows, cols = layout.rows or {}, layout.columns or {}
  else
    for _, name in ipairs(varying) do
      if ROW_AXES[name] then rows[#rows + 1] = name else cols[#cols + 1] = name end
    end
    if #cols == 0 and #rows > 1 then cols[1] = table.remove(rows) end
  end
  return rows, cols, values, varying
end

-- Every combination of the axes' values, as lists of { axis, value }.
local function combos(axes, values)
  local out = { {} }
  for _, name in ipairs(axes) do
    local next_out = {}
    for _, c in ipairs(out) do
      for _, v in ipairs(values[name]) do
        local n = {}
        for i, x in ipairs(c) do n[i] = x end
        n[#n + 1] = { name, v }
        next_out[#next_out + 1] = n
      end
    end
    out = next_out
  end
  return out
end

local function matches(r, combo)
  for _, pair in ipairs(combo) do
    if tostring(r.axes and r.axes[pair[1]]) ~= tostring(pair[2]) then return false end
  end
  return true
end

local function combo_label(combo)
  local parts = {}
  for _, pair in ipairs(combo) do
    parts[#parts + 1] = (pair[1] == "prompt" and "" or pair[1] .. " ") .. label(pair[1], pair[2])
  end
  return table.concat(parts, " · ")
end

local function combo_title(combo)
  local parts = {}
  for _, pair in ipairs(combo) do parts[#parts + 1] = pair[1] .. ": " .. tostring(pair[2]) end
  return table.concat(parts, "\n")
end

local CSS = [[
body{font:14px/1.35 system-ui,sans-serif;margin:16px;background:#111;color:#ddd}
h1{font-size:18px;margin:0 0 4px}
.summary{color:#aaa;margin-bottom:10px}
.filters{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:12px}
.filters label{font-size:12px;color:#aaa}
.filters select{display:block;background:#222;color:#ddd;border:1px solid #444;max-width:260px}
table{border-collapse:collapse}
th{font-weight:600;font-size:12px;color:#bbb;padding:4px;vertical-align:bottom;max-width:240px}
th.row{text-align:left;vertical-align:top;max-width:220px}
td{padding:4px;vertical-align:top}
.cell{width:200px;background:#1c1c1c;border:1px solid #333;border-radius:4px;margin:0 0 4px}
.cell video{width:200px;display:block;background:#000;border-radius:4px 4px 0 0}
.cell .cap{font-size:11px;color:#999;padding:3px 5px}
.cell.bad{border-color:#833}
.cell .err{color:#f88;font-size:12px;padding:6px;height:101px;overflow:hidden}
.hidden{display:none}
]]

local SCRIPT = [[
(function(){
  var sel = document.querySelectorAll('.filters select');
  function apply(){
    var want = {};
    sel.forEach(function(s){ if (s.value !== '') want[s.name] = s.value; });
    document.querySelectorAll('.cell').forEach(function(c){
      var ok = true;
      for (var k in want) { if (c.getAttribute('data-' + k) !== want[k]) ok = false; }
      c.classList.toggle('hidden', !ok);
    });
  }
  // The filters live in the address too (#seed=2&motion=small): a view can be shared.
  function fromHash(){
    var want = {};
    location.hash.replace(/^#/, '').split('&').forEach(function(kv){
      var i = kv.indexOf('=');
      if (i > 0) want[decodeURIComponent(kv.slice(0, i))] = decodeURIComponent(kv.slice(i + 1));
    });
    sel.forEach(function(s){ s.value = want[s.name] !== undefined ? want[s.name] : ''; });
    apply();
  }
  function toHash(){
    var parts = [];
    sel.forEach(function(s){
      if (s.value !== '') parts.push(encodeURIComponent(s.name) + '=' + encodeURIComponent(s.value));
    });
    history.replaceState(null, '', parts.length ? '#' + parts.join('&') : location.pathname);
  }
  sel.forEach(function(s){ s.addEventListener('change', function(){ apply(); toHash(); }); });
  window.addEventListener('hashchange', fromHash);
  fromHash();
  var vids = document.querySelectorAll('video');
  var out = document.getElementById('media-status');
  var loaded = 0, failed = 0, total = vids.length;
  function settle(){
    out.setAttribute('data-loaded', loaded);
    out.setAttribute('data-failed', failed);
    out.setAttribute('data-total', total);
    if (loaded + failed === total) {
      out.setAttribute('data-done', '1');
      out.textContent = loaded + ' of ' + total + ' videos loaded' +
        (failed ? ', ' + failed + ' failed' : '');
    }
  }
  vids.forEach(function(v){
    var done = false;
    function ok(){ if (!done) { done = true; loaded++; settle(); } }
    function bad(){ if (!done) { done = true; failed++; settle(); } }
    if (v.readyState >= 2) ok();
    v.addEventListener('loadeddata', ok);
    v.addEventListener('error', bad);
    var src = v.querySelector('source');
    if (src) src.addEventListener('error', bad);
  });
  settle();
})();
]]

local function cell_html(r, varying)
  local attrs = { 'class="cell' .. (r.status == "succeeded" and "" or " bad") .. '"' }
  for _, name in ipairs(varying) do
    attrs[#attrs + 1] = string.format('data-%s="%s"', name, esc(tostring(r.axes and r.axes[name])))
  end
  attrs[#attrs + 1] = string.format('data-status="%s"', esc(r.status or ""))
  -- The grid's headers say the varying axes and the page's head the fixed ones: the caption
  -- keeps to the task (all parameters are in the tooltip).
  local caption = {}
  if r.task_id then caption[#caption + 1] = "task " .. tostring(r.task_id) end
  if r.cost ~= nil then
    local row = prices.lookup(r.provider, "*")
    local unit = row and ((row.reports == "credits" and " credits") or (row.reports == "usd" and " USD"))
      or ""
    caption[#caption + 1] = tostring(r.cost) .. unit
  end
  local title = {}
  for _, name in ipairs(ORDER) do
    local v = r.axes and r.axes[name]
    if v ~= nil then title[#title + 1] = name .. ": " .. tostring(v) end
  end
  local body
  if r.video then
    body = string.format('<video src="%s" muted loop autoplay playsinline preload="auto"></video>',
      esc(r.video))
  else
    body = string.format('<div class="err">%s%s</div>', esc(r.status or "?"),
      r.error and (": " .. esc(r.error)) or "")
  end
  return string.format('<div %s title="%s">%s<div class="cap">#%s · %s</div></div>',
    table.concat(attrs, " "), esc(table.concat(title, "\n")), body, esc(tostring(r.index or "?")),
    esc(table.concat(caption, " · ")))
end

--- Renders the page for results (a list of result records) and planj (plan.json, or nil).
function report.html(results, planj)
  local rows, cols, values, varying = report.layout(results, planj)
  local row_combos, col_combos = combos(rows, values), combos(cols, values)
  local counts = {}
  for _, r in ipairs(results) do counts[r.status or "?"] = (counts[r.status or "?"] or 0) + 1 end
  local count_text = {}
  for _, s in ipairs({ "succeeded", "failed", "canceled", "may_exist", "budget", "incomplete",
    "rejected", "invalid", "error", "pending", "duplicate" }) do
    if counts[s] then count_text[#count_text + 1] = counts[s] .. " " .. s:gsub("_", " ") end
  end
  local title = (planj and planj.name) or "vidu batch"
  local h = {}
  local function w(...) for i = 1, select("#", ...) do h[#h + 1] = select(i, ...) end end
  w('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width">',
    '<meta http-equiv="Content-Security-Policy" content="default-src \'self\'; ',
    'style-src \'unsafe-inline\'; script-src \'unsafe-inline\'; media-src \'self\'">',
    '<title>', esc(title), '</title><style>', CSS, '</style></head><body>\n')
  -- What every item shares (the axes with one value), said once.
  local fixed = {}
  for _, name in ipairs(ORDER) do
    if #values[name] == 1 then fixed[#fixed + 1] = name .. " " .. label(name, values[name][1]) end
  end
  w('<h1>', esc(title), '</h1>\n<div class="summary">', #results, ' items: ',
    esc(table.concat(count_text, ", ")),
    #fixed > 0 and (" · " .. esc(table.concat(fixed, " · "))) or "",
    ' · <output id="media-status" data-done="">loading videos</output></div>\n')
  -- Filters: one per varying axis, and the status.
  w('<div class="filters">')
  local filter_axes = {}
  for _, name in ipairs(varying) do filter_axes[#filter_axes + 1] = name end
  filter_axes[#filter_axes + 1] = "status"
  local statuses = {}
  for s in pairs(counts) do statuses[#statuses + 1] = s end
  table.sort(statuses)
  values.status = statuses
  for _, name in ipairs(filter_axes) do
    w('<label>', esc(name), '<select name="', esc(name), '"><option value="">all</option>')
    for _, v in ipairs(values[name]) do
      w('<option value="', esc(tostring(v)), '">', esc(label(name, v)), '</option>')
    end
    w('</select></label>')
  end
  w('</div>\n<table>\n')
  if #cols > 0 then
    w('<tr><th></th>')
    for _, c in ipairs(col_combos) do
      w('<th title="', esc(combo_title(c)), '">', esc(combo_label(c)), '</th>')
    end
    w('</tr>\n')
  end
  for _, rc in ipairs(row_combos) do
    w('<tr><th class="row" title="', esc(combo_title(rc)), '">', esc(combo_label(rc)), '</th>')
    for _, cc in ipairs(col_combos) do
      w('<td>')
      for _, r in ipairs(results) do
        if matches(r, rc) and matches(r, cc) then w(cell_html(r, varying)) end
      end
      w('</td>')
    end
    w('</tr>\n')
  end
  w('</table>\n<script>', SCRIPT, '</script>\n</body></html>\n')
  return table.concat(h)
end

--- Writes DIR/index.html from DIR/results.jsonl (and DIR/plan.json when present):
-- path, counts | nil, err.
function report.write(dir)
  local results = read_lines(dir .. "/results.jsonl")
  if not results then return nil, dir .. "/results.jsonl: no such file (run vidu batch first)" end
  local planj = read_json(dir .. "/plan.json")
  local html = report.html(results, planj)
  local path = dir .. "/index.html"
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  f:write(html)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then return nil, rerr end
  local n, videos = #results, 0
  for _, r in ipairs(results) do if r.video then videos = videos + 1 end end
  return path, { items = n, videos = videos }
end

return report
