-- The README's tables and lists against the code, so they cannot drift apart, and its
-- first-hour script run as written. What is read from the code, and how:
-- * client options: the table named RUNTIME found among the upvalues reachable from
--   vidu.client (today client.new's), plus any provider driver's `options`; and, through
--   the public API only, vidu.client raising for a wrongly typed value of each README option
--   with a message naming it, never "unknown option";
-- * submit parameters: each driver's declared rules, require("vidu.providers").driver(p).rules:
--   .fields (names), .models (names), .default_model and .prompt_max; and, through the public
--   API only, client:submit raising for a wrongly typed value of each README parameter with
--   a message naming it (nothing is sent: the check comes first);
-- * error kinds: require("vidu.errors").kinds.
local vidu = require("vidu")
local util = require("support.util")

local README = util.read_file("README.md")
local LUA = os.getenv("VIDU_LUA") or "lua5.4"
local PROVIDERS = { "fal", "vidu", "wavespeed", "vtrix", "relay" }

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function sorted(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  table.sort(out)
  return out
end

-- The names in `backticks` in a piece of text, in order.
local function ticked(text)
  local out = {}
  for name in text:gmatch("`([^`]+)`") do out[#out + 1] = name end
  return out
end

-- The rows (lists of trimmed cells) of the first table under the heading `heading` whose
-- header row starts with `first`.
local function table_rows(heading, first)
  local at = README:find("\n" .. heading .. "\n", 1, true)
  assert(at, "README has no heading " .. heading)
  local start = README:find("\n| " .. first .. " |", at, true)
  assert(start, "README has no table starting | " .. first .. " | under " .. heading)
  local rows = {}
  local n = 0
  for line in README:sub(start + 1):gmatch("([^\n]*)\n") do
    if line:sub(1, 1) ~= "|" then break end
    n = n + 1
    if n > 2 then -- past the header and the |---| line
      local cells = {}
      for cell in line:sub(2, -2):gmatch("([^|]*)|?") do
        if #cells < 8 then cells[#cells + 1] = cell:match("^%s*(.-)%s*$") end
      end
      rows[#rows + 1] = cells
    end
  end
  return rows
end

-- A table named `name` among the upvalues reachable from fn (through functions and the
-- function fields of tables, a few levels deep).
local function find_upvalue(fn, name, depth, seen)
  if depth > 3 or seen[fn] then return nil end
  seen[fn] = true
  local nexts = {}
  local i = 1
  while true do
    local n, v = debug.getupvalue(fn, i)
    if not n then break end
    if n == name and type(v) == "table" then return v end
    if type(v) == "function" then
      nexts[#nexts + 1] = v
    elseif type(v) == "table" and not seen[v] then
      seen[v] = true
      for _, f in pairs(v) do
        if type(f) == "function" then nexts[#nexts + 1] = f end
      end
    end
    i = i + 1
  end
  for _, f in ipairs(nexts) do
    local found = find_upvalue(f, name, depth + 1, seen)
    if found then return found end
  end
  return nil
end

-- A value no option takes, so a known name raises for its type and an unknown one for its name.
local ODD = coroutine.create(function() end)

local function raises(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

describe("README: Clients table", function()
  local rows = table_rows("### Clients", "option")

  local documented = {}
  for _, row in ipairs(rows) do
    for _, name in ipairs(ticked(row[1])) do documented[#documented + 1] = name end
  end

  it("lists every option the client takes, and no other", function()
    local runtime = require("vidu.client").RUNTIME or find_upvalue(vidu.client, "RUNTIME", 0, {})
    assert.is_table(runtime, "cannot find the client's option table (RUNTIME) from vidu.client")
    local known = {}
    for k in pairs(runtime) do known[k] = true end
    for _, p in ipairs(PROVIDERS) do
      for k in pairs(require("vidu.providers." .. p).options or {}) do known[k] = true end
    end
    assert.are.same(sorted_keys(known), sorted(documented))
  end)

  it("names only options that vidu.client knows (a wrong type raises naming the option)", function()
    assert.is_true(#documented >= 8)
    for _, name in ipairs(documented) do
      local opts = { api_key = "k" }
      opts[name] = ODD
      local err = raises(vidu.client, "vidu", opts)
      assert.is_nil(err:find("unknown option", 1, true), name .. ": " .. err)
      assert.truthy(err:find(name, 1, true), name .. ": " .. err)
    end
    -- The probe tells the difference.
    assert.truthy(raises(vidu.client, "vidu", { api_key = "k", bogus = ODD }):find("unknown option", 1, true))
  end)
end)

describe("README: parameters table", function()
  local rows = table_rows("### Parameters, checked before anything is sent", "provider")
  local PROVIDER_RULES = {}
  for _, p in ipairs(PROVIDERS) do
    PROVIDER_RULES[p] = require("vidu.providers").driver(p).rules
  end

  -- provider -> { params = {names}, models = {names}, prompt = n }
  local readme = {}
  for _, row in ipairs(rows) do
    local name = row[1]:match("^(%w+)")
    readme[name] = { params_cell = row[2], models = ticked(row[3]),
      models_as = row[3]:match("^the same as (%w+)"),
      prompt = tonumber((row[4] or ""):match("prompt (%d+)")) }
  end
  local function params_of(name)
    local cell = readme[name].params_cell
    local base, less = cell:match("^as (%w+), less (.*)$")
    if base then
      local drop = {}
      for _, n in ipairs(ticked(less)) do drop[n] = true end
      local out = {}
      for _, n in ipairs(params_of(base)) do
        if not drop[n] then out[#out + 1] = n end
      end
      return out
    end
    -- Parenthesised notes hold values (`normal`/`low`), not names.
    return ticked((cell:gsub("%b()", "")))
  end

  it("has one row per provider", function()
    assert.are.same(sorted(PROVIDERS), sorted_keys(readme))
  end)

  for _, p in ipairs(PROVIDERS) do
    describe(p, function()
      it("lists exactly the parameters validate knows", function()
        local rules = PROVIDER_RULES[p]
        assert.is_table(rules, "the rules of driver " .. p)
        assert.are.same(sorted_keys(rules.fields), sorted(params_of(p)))
      end)

      it("lists the models, the default first, and the prompt limit", function()
        local rules = PROVIDER_RULES[p]
        local models = readme[readme[p].models_as or p].models
        assert.are.equal(rules.default_model, models[1])
        if rules.models then assert.are.same(sorted_keys(rules.models), sorted(models)) end
        assert.are.equal(rules.prompt_max, readme[p].prompt)
      end)

      it("names only parameters client:submit knows (a wrong type raises naming it)", function()
        local client = vidu.client(p, { api_key = "k", base_url = "http://127.0.0.1:9" })
        local names = params_of(p)
        assert.is_true(#names >= 8)
        for _, name in ipairs(names) do
          local err = raises(client.submit, client, { [name] = ODD })
          assert.is_nil(err:find("unknown option", 1, true), name .. ": " .. err)
          assert.truthy(err:find("'" .. name .. "'", 1, true), name .. ": " .. err)
        end
        assert.truthy(raises(client.submit, client, { bogus = ODD }):find("unknown option", 1, true))
      end)
    end)
  end
end)

describe("README: Vidu's models table", function()
  local models = require("vidu.providers.vidu_models")
  local rows = table_rows("### Parameters, checked before anything is sent", "model")

  it("lists every model of vidu_models.vidu once, as the table says", function()
    local seen = {}
    for _, row in ipairs(rows) do
      local lo, hi = row[2]:match("^(%d+)%.%.(%d+)")
      local durations = {}
      if not lo then for d in row[2]:gmatch("%d+") do durations[#durations + 1] = tonumber(d) end end
      for _, name in ipairs(ticked(row[1])) do
        local m = models.vidu[name]
        assert.is_table(m, name)
        assert.is_nil(seen[name], name)
        seen[name] = true
        if lo then
          assert.are.same({ tonumber(lo), tonumber(hi) }, m.duration_range, name)
          assert.are.equal(tonumber(row[2]:match("default (%d+)")), m.default_duration, name)
          local res = ticked(row[3])
          assert.are.equal(m.default_resolution, res[1], name)
          assert.are.same(sorted(m.any_resolution), sorted(res), name)
        else
          assert.are.same(m.durations, durations, name)
          for _, d in ipairs(m.durations) do
            local cell = #m.durations == 1 and row[3] or row[3]:match(d .. " s: ([^;]*)")
            assert.are.same(m.resolutions[d], ticked(cell), name .. " at " .. d)
          end
        end
        assert.are.equal(m.prompt_max, tonumber(row[4]), name)
        assert.are.equal(m.legacy == true, row[1]:find("legacy", 1, true) ~= nil and name == "vidu1.5", name)
      end
    end
    assert.are.same(sorted_keys(models.vidu), sorted_keys(seen))
  end)
end)

describe("README: error kinds", function()
  it("lists every kind of vidu.errors.kinds, and no other", function()
    local list = README:match("Kinds: (.-) %(all listed in `vidu%.errors%.kinds`%)")
    assert.is_string(list, "README has no 'Kinds: ...' list")
    assert.are.same(sorted_keys(require("vidu.errors").kinds), sorted(ticked(list)))
  end)
end)

describe("README: your first hour", function()
  it("the script of step 3 runs against the emulator as written", function()
    local section = README:match("\n## Your first hour\n(.-)\n## ")
    assert.is_string(section)
    local code = section:match("```lua\n(.-)```")
    assert.is_string(code)
    code = code:gsub("\n   ", "\n"):gsub("^   ", "")
    local out = os.tmpname()
    -- Only the image, the output and how soon the emulator finishes differ from the README.
    local n1, n2, n3
    code, n1 = code:gsub('"my%.jpg"', string.format("%q", "spec/fixtures/jpeg_640x360.jpg"))
    code, n2 = code:gsub('"mine%.mp4"', string.format("%q", out))
    code, n3 = code:gsub("%.start%(%)", ".start{ config = { polls = 1, ffmpeg = false } }")
    assert.are.same({ 1, 1, 1 }, { n1, n2, n3 })
    local script = util.write_tmp(code)
    local p = assert(io.popen(LUA .. " " .. util.shell_quote(script) .. " 2>&1; echo \"exit=$?\""))
    local log = p:read("*a")
    p:close()
    os.remove(script)
    local video = util.read_file_if_exists(out)
    os.remove(out)
    assert.matches("exit=0\n$", log)
    assert.is_string(video, log)
    assert.are.equal("ftyp", video:sub(5, 8))
  end)
end)
