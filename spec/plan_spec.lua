-- vidu.plan (axes, product, errors) and vidu.prices (the documented table, overrides).
-- luacheck: max line length 130
local plan = require("vidu.plan")
local prices = require("vidu.prices")
local util = require("support.util")

describe("vidu.plan", function()
  it("expands the product of its axes, provider outermost and motion innermost", function()
    local p = assert(plan.normalise({ provider = "vidu", model = "viduq1", images = { "a.png" },
      prompts = { "p1", "p2", "p3" }, seeds = { 1, 2, 3 }, motions = { "small", "large" } }, "dir"))
    local items = plan.expand(p)
    assert.are.equal(18, #items)
    assert.are.same({ index = 1, provider = "vidu",
      axes = { provider = "vidu", model = "viduq1", image = "dir/a.png", prompt = "p1", seed = 1, motion = "small" },
      params = { model = "viduq1", image = "dir/a.png", prompt = "p1", seed = 1, movement_amplitude = "small" } },
      items[1])
    assert.are.equal("large", items[2].axes.motion)
    assert.are.equal(2, items[3].axes.seed)
    assert.are.equal("p3", items[18].axes.prompt)
    assert.are.same({ "prompt", "seed", "motion" }, plan.varying(p))
  end)

  it("takes singular or plural names, one value or a list, and fixed params", function()
    local p = assert(plan.normalise({ providers = { "fal", "vidu" }, image = "/abs/x.png", prompt = "one",
      duration = 4, params = { resolution = "720p" } }, "."))
    local items = plan.expand(p)
    assert.are.equal(2, #items)
    assert.are.equal("fal", items[1].provider)
    assert.are.equal("/abs/x.png", items[2].params.image)
    assert.are.equal(4, items[2].params.duration)
    assert.are.equal("720p", items[2].params.resolution)
  end)

  it("keeps URLs and absolute paths as they are", function()
    local p = assert(plan.normalise({ provider = "vidu", images = { "https://x.example/a.png", "/a/b.png",
      "data:image/png;base64,AAAA" } }, "plans"))
    assert.are.same({ "https://x.example/a.png", "/a/b.png", "data:image/png;base64,AAAA" }, p.axes.image)
  end)

  -- { plan table, the error's text }
  local rows = {
    { { image = "a.png" }, 'plan t: needs "provider" (or "providers")' },
    { { provider = "vidu" }, 'plan t: needs "image" (or "images")' },
    { { provider = "vidu", image = "a", seedz = { 1 } }, 'plan t: unknown field "seedz"' },
    { { provider = "vidu", image = "a", seed = 1, seeds = { 2 } }, 'plan t: give "seed" or "seeds", not both' },
    { { provider = "vidu", image = "a", seeds = { 1, "2" } }, "plan t: seeds[2] must be a number, got string" },
    { { provider = "vidu", image = "a", seeds = { 1.5 } }, "plan t: seeds[1] must be a whole number, got 1.5" },
    { { provider = "vidu", image = "a", prompts = {} }, 'plan t: "prompts" must be a value or a non-empty list' },
    { { provider = "vidu", image = "a", params = { seed = 1 } }, 'plan t: params.seed: use the "seeds" axis instead' },
    { { provider = "vidu", image = "a", concurrency = 0 }, "plan t: concurrency must be a whole number >= 1" },
    { { provider = "vidu", image = "a", budget = "10" }, 'plan t: field "budget" must be a number, got string' },
    { { provider = "vidu", image = "a", layout = { rows = { "seed" } } },
      'plan t: layout.rows names "seed", not an axis of this plan' },
    { { provider = "vidu", image = "a", prices = { vidu = "cheap" } },
      'plan t: prices: expected { ["provider/model"] = USD, ... }' },
  }
  for i, row in ipairs(rows) do
    it("refuses a bad plan, naming the field (" .. i .. ")", function()
      local p, err = plan.normalise(row[1], ".", "t")
      assert.is_nil(p)
      assert.are.equal(row[2], err:sub(1, #row[2]))
    end)
  end

  it("loads JSON and Lua plan files, images relative to the plan's directory", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    util.write_file(dir .. "/p.json", '{"provider":"vidu","images":["in.png"],"seeds":[1,2]}')
    util.write_file(dir .. "/p.lua", 'local s = {} for i = 1, 4 do s[i] = i end\n'
      .. 'return { provider = "fal", image = "in.png", seeds = s }')
    util.write_file(dir .. "/bad.json", '{"provider":')
    local a = assert(plan.load(dir .. "/p.json"))
    assert.are.same({ dir .. "/in.png" }, a.axes.image)
    assert.are.equal(2, #plan.expand(a))
    local b = assert(plan.load(dir .. "/p.lua"))
    assert.are.equal(4, #plan.expand(b))
    local none, err = plan.load(dir .. "/bad.json")
    assert.is_nil(none)
    assert.matches("not valid JSON", err)
    none, err = plan.load(dir .. "/missing.json")
    assert.is_nil(none)
    assert.matches("No such file", err)
    os.execute("rm -rf " .. dir)
  end)
end)

describe("vidu.prices", function()
  it("gives every row a date and a source, and a figure only where one is documented", function()
    for _, row in ipairs(prices.table) do
      assert.matches("^%d%d%d%d%-%d%d%-%d%d$", row.date)
      assert.is_true(#row.source > 20)
      if row.usd then assert.is_true(row.usd > 0) end
    end
    assert.are.equal(0.40, prices.lookup("fal", "fal-ai/vidu/q1/image-to-video").usd)
    assert.are.equal(0.30, prices.lookup("wavespeed", "vidu/image-to-video-2.0").usd)
    for _, name in ipairs({ "vidu", "relay", "vtrix" }) do assert.is_nil(prices.lookup(name, "viduq1").usd) end
  end)

  it("estimates from the table, from an override, or says how to pass one", function()
    assert.are.equal(0.40, (prices.estimate("fal", { model = "fal-ai/vidu/q1/image-to-video" })))
    local none, why = prices.estimate("vidu", { model = "viduq1" })
    assert.is_nil(none)
    assert.matches("no documented price for vidu/viduq1", why)
    assert.matches("%-%-price vidu/viduq1=USD", why)
    assert.are.equal(0.2, (prices.estimate("vidu", { model = "viduq1" }, { ["vidu/viduq1"] = 0.2 })))
    assert.are.equal(0.3, (prices.estimate("vidu", { model = "viduq1" }, { vidu = 0.3 })))
    assert.are.equal(0.1, (prices.estimate("fal", { model = "fal-ai/vidu/q1/image-to-video" }, { ["*"] = 0.1 })))
  end)

  it("parses overrides and refuses malformed ones", function()
    assert.are.same({ "vidu/viduq1", 0.25 }, { prices.parse_override("vidu/viduq1=0.25") })
    assert.are.same({ "vidu", 1 }, { prices.parse_override("vidu=1") })
    assert.are.same({ "*", 0.5 }, { prices.parse_override("0.5") })
    for _, bad in ipairs({ "vidu=", "vidu=cheap", "-1", "vidu=nan" }) do
      local none, err = prices.parse_override(bad)
      assert.is_nil(none, bad)
      assert.matches("expected provider/model=USD", err)
    end
  end)

  it("counts a reported cost as USD only where the provider reports USD", function()
    assert.are.equal(0.35, prices.reported_usd("vtrix", 0.35))
    assert.is_nil(prices.reported_usd("vidu", 25)) -- credits
    assert.is_nil(prices.reported_usd("fal", 0.4))
  end)

  it("is the table the README shows", function()
    local readme = util.read_file("README.md")
    local money = assert(readme:match("\n### Money\n(.-)\n###"), "README has a Money section")
    for _, row in ipairs(prices.table) do
      local figure = row.usd and string.format("$%.2f", row.usd) or "unknown"
      local line = money:match("\n(| " .. row.provider .. " |[^\n]*)")
      assert.truthy(line, row.provider)
      assert.truthy(line:find(figure, 1, true), row.provider .. ": " .. figure)
      assert.truthy(line:find(row.date, 1, true), row.provider .. ": " .. row.date)
    end
  end)
end)
