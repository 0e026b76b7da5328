-- vidu.client: options, keys, and what a client shows of itself.
local vidu = require("vidu")
local client_mod = require("vidu.client")
local util = require("support.util")

local KEY = "sk-client-spec-0123456789abcdef"

local function driver(extra)
  local d = {
    name = "test", env_key = "VIDU_SPEC_SURELY_UNSET_KEY",
    default_base_url = "http://127.0.0.1:9",
    poll_defaults = { first = 3, max = 20, factor = 2 },
    auth_header = function(k) return "Bearer " .. k end,
  }
  for k, v in pairs(extra or {}) do d[k] = v end
  return d
end

-- True when `needle` appears in any string reachable from `v` (keys and values).
local function contains(v, needle, seen)
  seen = seen or {}
  if type(v) == "string" then return v:find(needle, 1, true) ~= nil end
  if type(v) ~= "table" or seen[v] then return false end
  seen[v] = true
  for k, x in pairs(v) do
    if contains(k, needle, seen) or contains(x, needle, seen) then return true end
  end
  return false
end

describe("vidu.client", function()
  it("shows only its provider, and the key is nowhere in its fields", function()
    local c = vidu.client(driver(), { api_key = KEY })
    assert.are.equal("vidu.client<test>", tostring(c))
    assert.is_false(contains(c, KEY))
    assert.are.equal(KEY, c:_key())
  end)

  it("raises when no key is given, naming the environment variable", function()
    local ok, err = pcall(vidu.client, driver())
    assert.is_false(ok)
    assert.matches("VIDU_SPEC_SURELY_UNSET_KEY", err)
    assert.matches("emulator", err)
    assert.has_error(function() vidu.client(driver(), { api_key = "" }) end)
  end)

  it("reads the key from the driver's environment variable", function()
    -- PATH is set in every test environment; it stands in for a provider's key variable.
    local c = vidu.client(driver{ env_key = "PATH" })
    assert.are.equal(os.getenv("PATH"), c:_key())
  end)

  it("takes the schedule from the driver and lets options override it", function()
    local c = vidu.client(driver(), { api_key = KEY })
    assert.are.same({ first = 3, max = 20, factor = 2 }, c.poll)
    c = vidu.client(driver(), { api_key = KEY, poll = { first = 9 } })
    assert.are.same({ first = 9, max = 20, factor = 2 }, c.poll)
    assert.has_error(function() vidu.client(driver(), { api_key = KEY, poll = { fisrt = 1 } }) end)
    assert.has_error(function() vidu.client(driver(), { api_key = KEY, poll = { max = -1 } }) end)
  end)

  it("base_url: replaces the default, trailing slash trimmed; required without default", function()
    local c = vidu.client(driver(), { api_key = KEY, base_url = "http://127.0.0.1:5555/" })
    assert.are.equal("http://127.0.0.1:5555", c.base_url)
    assert.is_true(c.custom_base_url)
    local ok, err = pcall(vidu.client, driver{ default_base_url = false }, { api_key = KEY })
    assert.is_false(ok)
    assert.matches("base_url is required", err)
    assert.has_error(function() vidu.client(driver(), { api_key = KEY, base_url = "ftp://x" }) end)
  end)

  it("raises at vidu.client for keys, URLs and timeouts that cannot be right", function()
    -- { options, a plain substring of the message }; the key never in the message
    local rows = {
      { { api_key = KEY .. "\n" }, "control character" },
      { { api_key = "sk two words" }, "space" },
      { { api_key = KEY .. "\0" }, "control character" },
      { { api_key = KEY, base_url = "http://127.0.0.1:1/a b" }, "without spaces" },
      { { api_key = KEY, base_url = "http://127.0.0.1:1/\r\nX: y" }, "control characters" },
      { { api_key = KEY, base_url = "https://user:secret-pw@relay.example/" }, "credentials" },
      { { api_key = KEY, base_url = "https://token@relay.example" }, "credentials" },
      { { api_key = KEY, timeout = -1 }, "timeout must be a number of seconds" },
      { { api_key = KEY, timeout = 0 / 0 }, "timeout must be a number of seconds" },
      { { api_key = KEY, connect_timeout = -5 }, "connect_timeout" },
      { { api_key = KEY, download_timeout = math.huge }, "download_timeout" },
    }
    for i, row in ipairs(rows) do
      local ok, err = pcall(vidu.client, driver(), row[1])
      assert.is_false(ok, "row " .. i)
      assert.truthy(tostring(err):find(row[2], 1, true), "row " .. i .. ": " .. tostring(err))
      assert.falsy(tostring(err):find("secret-pw", 1, true))
      assert.falsy(tostring(err):find(KEY, 1, true))
    end
  end)

  describe("trust: a private CA", function()
    local tls
    setup(function() tls = require("support.tls").start() end)
    teardown(function() if tls then tls:stop() end end)

    local function get(opts)
      local o = { api_key = KEY, base_url = tls.url, scheduler = require("vidu.scheduler").new(),
        retries = 1 }
      for k, v in pairs(opts) do o[k] = v end
      return vidu.client(driver(), o):request{ path = "/" }
    end

    it("is refused by default, accepted with ca_file or ca_path", function()
      local resp, err = get{}
      assert.is_nil(resp)
      assert.are.equal("network", err.kind)
      assert.are.equal("tls", err.code)
      assert.are.equal(200, assert(get{ ca_file = tls.dir .. "/ca.pem" }).status)
      assert.are.equal(200, assert(get{ ca_path = tls.dir .. "/hashed" }).status)
      local _, oerr = get{ ca_file = tls.dir .. "/other.pem" }
      assert.are.equal("tls", oerr.code)
    end)

    it("honours SSL_CERT_FILE and CURL_CA_BUNDLE in a fresh process", function()
      local lua = os.getenv("VIDU_LUA") or "lua5.4"
      local script = util.write_tmp(table.concat({
        "local vidu = require('vidu')",
        "local c = vidu.client({ name = 't', auth_header = function(k) return 'Bearer ' .. k end },",
        "  { api_key = 'k-123456', base_url = arg[1], retries = 1 })",
        "local r, e = c:request{ path = '/' }",
        "io.write(r and tostring(r.status) or tostring(e.code))",
      }, "\n"))
      local function run(env)
        local p = assert(io.popen(env .. " " .. lua .. " " .. script .. " " .. tls.url))
        local out = p:read("*a")
        p:close()
        return out
      end
      assert.are.equal("tls", run("env -u SSL_CERT_FILE -u CURL_CA_BUNDLE"))
      assert.are.equal("200", run("env -u CURL_CA_BUNDLE SSL_CERT_FILE=" .. tls.dir .. "/ca.pem"))
      assert.are.equal("200", run("env CURL_CA_BUNDLE=" .. tls.dir .. "/ca.pem"))
      os.remove(script)
    end)
  end)

  it("checks runtime options and passes provider options to the driver", function()
    assert.has_error(function() vidu.client(driver(), { api_key = KEY, timeout = "5" }) end)
    assert.has_error(function() vidu.client(driver(), { api_key = KEY, colour = "red" }) end)
    assert.has_error(function() vidu.client(driver(), { api_key = KEY, retries = 0 }) end)
    assert.has_error(function() vidu.client(driver(), { api_key = KEY, max_connections = 0 }) end)
    local got
    vidu.client(driver{ options = { region = "string" }, init = function(_, o) got = o end },
      { api_key = KEY, region = "eu" })
    assert.are.equal("eu", got.region)
    assert.has_error(function()
      vidu.client(driver{ options = { region = "string" } }, { api_key = KEY, region = 1 })
    end)
    local seen
    vidu.client(driver{ init = function(_, opts) seen = opts end }, { api_key = KEY, x = 1 })
    assert.are.same({ x = 1 }, seen)
  end)

  it("retries and max_connections shape the policy and the slots", function()
    local c = vidu.client(driver(), { api_key = KEY, retries = 2, max_connections = 3,
      timeout = 7 })
    assert.are.equal(2, c.retry.attempts)
    assert.are.equal(3, c.max_connections)
    assert.are.equal(7, c.timeout)
    assert.are.equal(3, c:_slots("http://h").size)
  end)

  it("an unknown provider name raises", function()
    local ok, err = pcall(vidu.client, "nope", { api_key = KEY })
    assert.is_false(ok)
    assert.matches("unknown provider", err)
    assert.has_error(function() vidu.client("../etc", { api_key = KEY }) end)
  end)

  for _, name in ipairs({ "fal", "vidu", "wavespeed", "vtrix" }) do
    it("makes a " .. name .. " client from the bundled driver", function()
      local c = vidu.client(name, { api_key = KEY })
      assert.are.equal("vidu.client<" .. name .. ">", tostring(c))
      assert.is_false(contains(c, KEY))
      assert.is_true(c.poll.first > 0 and c.poll.max >= c.poll.first and c.poll.factor > 1)
    end)
  end

  it("relay needs a base_url", function()
    assert.has_error(function() vidu.client("relay", { api_key = KEY }) end)
    local c = vidu.client("relay", { api_key = KEY, base_url = "http://127.0.0.1:1" })
    assert.are.equal("http://127.0.0.1:1", c.base_url)
  end)

  it("client_mod.new is what vidu.client calls", function()
    assert.are.equal("vidu.client<test>", tostring(client_mod.new(driver(), { api_key = KEY })))
  end)
end)
