-- The contact sheet in a real browser: a batch runs against the emulator (real MP4s made by
-- ffmpeg from the image, one item failing), `vidu report` writes DIR/index.html, and headless
-- Chromium (Debian's `chromium`) loads it from file://: every <video> must load its media
-- (the page writes the count into its DOM, read back with --dump-dom), a filter given in the
-- address must hide the other cells, and a screenshot is saved as build/report.png.
--
-- Run by `make test-report` (which installs chromium), not by `make test`.
-- luacheck: max line length 130
local json = require("vidu.json")
local journal = require("vidu.journal")
local emulator = require("support.emulator")
local util = require("support.util")

local LUA = os.getenv("VIDU_LUA") or "lua5.4"
local ROOT = journal.abspath(".")
local q = util.shell_quote
local SHOT = ROOT .. "/build/report.png"

-- Runs headless Chromium on a file URL with one more flag (--dump-dom or --screenshot=...),
-- from a new empty profile each time: its stdout.
local function chromium(url, flag)
  local profile = os.tmpname()
  os.remove(profile)
  assert(os.execute("mkdir -p " .. q(profile)))
  local cmd = table.concat({
    "timeout", "120", "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--user-data-dir=" .. q(profile), "--virtual-time-budget=15000", "--window-size=1100,480",
    "--hide-scrollbars", flag, q(url), "2>/dev/null",
  }, " ")
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  os.execute("rm -rf " .. q(profile))
  return out
end

local function media_status(dom)
  local tag = dom:match('<output id="media%-status"[^>]*>')
  assert.truthy(tag, "the page has its media-status element")
  local attrs = {}
  for k, v in tag:gmatch('data%-(%w+)="(%d*)"') do attrs[k] = tonumber(v) end
  return attrs
end

describe("the contact sheet in headless Chromium", function()
  local emu, dir

  setup(function()
    emu = emulator.start{ seed = 51 }
    emu:reset{ progress = "time", seconds = 0.3, outcome = "success" }
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
  end)
  teardown(function()
    if emu then emu:stop() end
    os.execute("rm -rf " .. q(dir))
  end)

  it("loads every video, filters from the address, and is photographed", function()
    util.write_file(dir .. "/plan.json", json.encode{
      name = "astronaut: 2 prompts x 2 seeds x 2 motions", provider = "vidu",
      image = ROOT .. "/spec/fixtures/astronaut.png",
      prompts = { "The astronaut waved and the camera moved up.", "A slow dolly in, dust drifting in the light." },
      seeds = { 1, 2 }, motions = { "small", "large" },
    })
    emu:next{ outcome = "failed" } -- the first item fails: the sheet shows its error
    local cmd = table.concat({ "env", "-C", q(dir), "VIDU_BASE_URL=" .. q(emu.url), LUA, q(ROOT .. "/bin/vidu"),
      "batch", "plan.json", "--out", "sheet", "--concurrency", "1", "--poll", "0.2,0.5", ">/dev/null", "2>&1;",
      "echo $?" }, " ")
    local p = assert(io.popen(cmd))
    local code = tonumber(p:read("*a"))
    p:close()
    assert.are.equal(1, code) -- one item failed
    local html = util.read_file(dir .. "/sheet/index.html")
    assert.are.equal(7, select(2, html:gsub("<video ", "")))

    local url = "file://" .. dir .. "/sheet/index.html"
    local dom = chromium(url, "--dump-dom")
    local st = media_status(dom)
    assert.are.same({ done = 1, loaded = 7, failed = 0, total = 7 }, st)
    assert.truthy(dom:find("7 of 7 videos loaded", 1, true))
    -- The failed item: its cell says why.
    assert.truthy(dom:find('data%-status="failed"[^>]*>%s*<div class="err">failed: generation failed'))

    -- A filter in the address hides every cell that does not match.
    local filtered = chromium(url .. "#seed=2&motion=large", "--dump-dom")
    local shown, hidden = 0, 0
    for cls in filtered:gmatch('<div class="(cell[^"]*)"') do
      if cls:find("hidden", 1, true) then hidden = hidden + 1 else shown = shown + 1 end
    end
    assert.are.equal(2, shown)
    assert.are.equal(6, hidden)

    os.execute("mkdir -p " .. q(ROOT .. "/build"))
    os.remove(SHOT)
    chromium(url, "--screenshot=" .. q(SHOT))
    local png = util.read_file(SHOT)
    assert.are.equal("\137PNG\r\n\26\n", png:sub(1, 8))
    assert.is_true(#png > 20000, "a screenshot of a page with videos, not a blank one")
    print("\ncontact sheet screenshot: " .. SHOT .. " (" .. #png .. " bytes)")
  end)
end)
