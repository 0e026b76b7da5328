-- vidu.report without a browser: layout along the axes, one cell per item (the last line
-- of an item wins), escaping, failures with their error. spec/browser/ renders it in Chromium.
local json = require("vidu.json")
local report = require("vidu.report")
local util = require("support.util")

local function result(index, prompt, seed, motion, status, extra)
  local r = { index = index, key = string.format("k%03d", index), provider = "vidu", status = status,
    axes = { provider = "vidu", image = "/x/a.png", prompt = prompt, seed = seed, motion = motion } }
  if status == "succeeded" then r.video = "videos/" .. r.key .. ".mp4" end
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

describe("vidu.report", function()
  it("puts prompts on rows and seeds x motions on columns by default", function()
    local results = {}
    local i = 0
    for _, p in ipairs({ "p1", "p2" }) do
      for _, s in ipairs({ 1, 2, 3 }) do
        for _, m in ipairs({ "small", "large" }) do
          i = i + 1
          results[i] = result(i, p, s, m, "succeeded")
        end
      end
    end
    local rows, cols = report.layout(results, nil)
    assert.are.same({ "prompt" }, rows)
    assert.are.same({ "seed", "motion" }, cols)
    rows, cols = report.layout(results, { layout = { rows = { "seed" }, columns = { "prompt", "motion" } } })
    assert.are.same({ "seed" }, rows)
    assert.are.same({ "prompt", "motion" }, cols)
    local html = report.html(results, { name = "grid", axes = { seed = { 1, 2, 3 } } })
    assert.are.equal(12, select(2, html:gsub("<video ", "")))
    assert.are.equal(6, select(2, html:gsub("<th title=", "")))
    assert.truthy(html:find("image a.png", 1, true)) -- the fixed axis, said once
    assert.truthy(html:find('<select name="motion">', 1, true))
  end)

  it("shows one cell per item, the last line winning, failures with their error, all escaped", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local lines = {
      json.encode(result(1, "<script>alert(1)</script>", 1, "small", "pending")),
      json.encode(result(2, "<script>alert(1)</script>", 2, "small", "pending")),
      json.encode(result(1, "<script>alert(1)</script>", 1, "small", "succeeded")),
      "{torn",
      json.encode(result(2, "<script>alert(1)</script>", 2, "small", "failed",
        { error = "generation failed: a <b> tag & more" })),
    }
    util.write_file(dir .. "/results.jsonl", table.concat(lines, "\n") .. "\n")
    local path, info = report.write(dir)
    assert.are.equal(dir .. "/index.html", path)
    assert.are.same({ items = 2, videos = 1 }, info)
    local html = util.read_file(path)
    assert.are.equal(2, select(2, html:gsub('<div class="cell', "")))
    assert.truthy(html:find("failed: generation failed: a &lt;b&gt; tag &amp; more", 1, true))
    assert.is_nil(html:find("<script>alert", 1, true))
    assert.truthy(html:find("&lt;script&gt;alert(1)&lt;/script&gt;", 1, true))
    assert.truthy(html:find("1 succeeded, 1 failed", 1, true))
    os.execute("rm -rf " .. dir)
  end)
end)
