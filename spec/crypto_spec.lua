-- vidu.core's crypto (csrc/crypto.c): SHA-256, HMAC-SHA256 and Ed25519 against the published
-- test vectors (FIPS 180-2 appendix B, RFC 4231 section 4, RFC 8032 section 7.1), hex and
-- base64url round trips, and the errors bad input gets.
local core = require("vidu.core")

local hex, unhex = core.hexencode, function(s) return assert(core.hexdecode(s)) end

describe("core.sha256", function()
  local cases = {
    { name = "empty", msg = "",
      digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    { name = "\"abc\" (FIPS 180-2 B.1)", msg = "abc",
      digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    { name = "the 448-bit message (FIPS 180-2 B.2)",
      msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
      digest = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
    { name = "one million 'a' (FIPS 180-2 B.3)", msg = string.rep("a", 1000000),
      digest = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
  }
  for _, c in ipairs(cases) do
    it(c.name, function()
      local d = core.sha256(c.msg)
      assert.are.equal(32, #d)
      assert.are.equal(c.digest, hex(d))
    end)
  end

  it("raises on a non-string", function()
    assert.has_error(function() core.sha256({}) end)
  end)
end)

describe("core.hmac_sha256 (RFC 4231)", function()
  local cases = {
    { n = 1, key = string.rep("\11", 20), data = "Hi There",
      mac = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    { n = 2, key = "Jefe", data = "what do ya want for nothing?",
      mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
    { n = 3, key = string.rep("\170", 20), data = string.rep("\221", 50),
      mac = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
    { n = 4, key = unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
      data = string.rep("\205", 50),
      mac = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
    -- Test case 5 publishes the first 128 bits only.
    { n = 5, key = string.rep("\12", 20), data = "Test With Truncation",
      mac = "a3b6167473100ee06e0c796c2955552b", truncated = true },
    { n = 6, key = string.rep("\170", 131), data = "Test Using Larger Than Block-Size Key - Hash Key First",
      mac = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    { n = 7, key = string.rep("\170", 131),
      data = "This is a test using a larger than block-size key and a larger than block-size data."
        .. " The key needs to be hashed before being used by the HMAC algorithm.",
      mac = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
  }
  for _, c in ipairs(cases) do
    it("test case " .. c.n, function()
      local mac = core.hmac_sha256(c.key, c.data)
      assert.are.equal(32, #mac)
      if c.truncated then mac = mac:sub(1, 16) end
      assert.are.equal(c.mac, hex(mac))
    end)
  end

  it("takes an empty key and empty data (same as a one-zero-byte key, as HMAC pads keys)", function()
    local mac = core.hmac_sha256("", "")
    assert.are.equal("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad", hex(mac))
    assert.are.equal(mac, core.hmac_sha256("\0", ""))
    assert.are_not.equal(mac, core.hmac_sha256("\0\1", ""))
  end)

  it("depends on every byte of key and data", function()
    local mac = core.hmac_sha256("key", "data")
    assert.are_not.equal(mac, core.hmac_sha256("kez", "data"))
    assert.are_not.equal(mac, core.hmac_sha256("key", "datb"))
    assert.are_not.equal(mac, core.hmac_sha256("key", "data\0"))
  end)

  it("raises on a missing argument", function()
    assert.has_error(function() core.hmac_sha256("key") end)
  end)
end)

describe("core.ed25519_verify (RFC 8032 section 7.1)", function()
  local vectors = {
    { n = 1, pub = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", msg = "",
      sig = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e397"
        .. "01cf9b46bd25bf5f0595bbe24655141438e7a100b" },
    { n = 2, pub = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", msg = "72",
      sig = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f361"
        .. "3d0f11d8c387b2eaeb4302aeeb00d291612bb0c00" },
    { n = 3, pub = "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", msg = "af82",
      sig = "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f76"
        .. "0984dc6594a7c15e9716ed28dc027beceea1ec40a" },
  }

  -- s with one bit of byte i flipped.
  local function flip(s, i)
    local b = s:byte(i)
    return s:sub(1, i - 1) .. string.char(b % 2 == 0 and b + 1 or b - 1) .. s:sub(i + 1)
  end

  for _, v in ipairs(vectors) do
    local pub, msg, sig = unhex(v.pub), unhex(v.msg), unhex(v.sig)
    describe("test " .. v.n, function()
      it("verifies", function()
        assert.is_true(core.ed25519_verify(pub, msg, sig))
      end)
      it("rejects a changed message", function()
        assert.is_false(core.ed25519_verify(pub, msg .. "x", sig))
        if #msg > 0 then assert.is_false(core.ed25519_verify(pub, flip(msg, 1), sig)) end
      end)
      it("rejects a changed signature (R half and S half)", function()
        assert.is_false(core.ed25519_verify(pub, msg, flip(sig, 1)))
        assert.is_false(core.ed25519_verify(pub, msg, flip(sig, 40)))
      end)
      it("rejects another key", function()
        assert.is_false(core.ed25519_verify(flip(pub, 5), msg, sig))
        local other = unhex(vectors[v.n % #vectors + 1].pub)
        assert.is_false(core.ed25519_verify(other, msg, sig))
      end)
    end)
  end

  it("rejects a key that is not a curve point, and an all-zero signature", function()
    local v = vectors[1]
    assert.is_false(core.ed25519_verify(string.rep("\255", 32), "", unhex(v.sig)))
    assert.is_false(core.ed25519_verify(unhex(v.pub), "", string.rep("\0", 64)))
  end)

  it("returns nil, err for a key or signature of the wrong length", function()
    local v = vectors[2]
    local ok, err = core.ed25519_verify(unhex(v.pub):sub(2), unhex(v.msg), unhex(v.sig))
    assert.is_nil(ok)
    assert.are.equal("ed25519_verify: public key must be 32 bytes, got 31", err)
    ok, err = core.ed25519_verify(unhex(v.pub), unhex(v.msg), unhex(v.sig) .. "\0")
    assert.is_nil(ok)
    assert.are.equal("ed25519_verify: signature must be 64 bytes, got 65", err)
  end)

  it("raises on a non-string argument", function()
    assert.has_error(function() core.ed25519_verify(nil, "", "") end)
  end)
end)

describe("core.secure_equal", function()
  local cases = {
    { "", "", true }, { "a", "a", true }, { "abc", "abd", false }, { "abc", "ab", false },
    { "ab", "abc", false }, { "\0\1", "\0\1", true }, { "\0\1", "\0\2", false },
    { string.rep("x", 1000), string.rep("x", 1000), true },
  }
  for i, c in ipairs(cases) do
    it("case " .. i, function()
      assert.are.equal(c[3], core.secure_equal(c[1], c[2]))
    end)
  end

  it("raises on a non-string", function()
    assert.has_error(function() core.secure_equal("a", nil) end)
  end)
end)

describe("core.hexencode / core.hexdecode", function()
  it("round-trips every byte value", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    local h = core.hexencode(all)
    assert.are.equal(512, #h)
    assert.are.equal("000102", h:sub(1, 6))
    assert.are.equal("fdfeff", h:sub(-6))
    assert.are.equal(all, core.hexdecode(h))
    assert.are.equal(all, core.hexdecode(h:upper()))
  end)

  it("handles empty and large inputs", function()
    assert.are.equal("", core.hexencode(""))
    assert.are.equal("", core.hexdecode(""))
    local big = string.rep("\171\205", 5000)
    assert.are.equal(big, core.hexdecode(core.hexencode(big)))
  end)

  local bad = {
    { "abc", "invalid hex: odd length 3" },
    { "abz0", "invalid hex at byte 3: unexpected character 'z'" },
    { "ab cd", "invalid hex at byte 3: unexpected byte 0x20" },
    { "0g", "invalid hex at byte 2: unexpected character 'g'" },
    { "a\0", "invalid hex at byte 2: unexpected byte 0x00" },
    { "ab\n", "invalid hex at byte 3: unexpected byte 0x0a" },
  }
  for _, c in ipairs(bad) do
    it("refuses " .. string.format("%q", c[1]), function()
      local v, err = core.hexdecode(c[1])
      assert.is_nil(v)
      assert.are.equal(c[2], err)
    end)
  end
end)

describe("core.b64urlencode / core.b64urldecode", function()
  it("uses the URL-safe alphabet without padding", function()
    assert.are.equal("-_-_", core.b64urlencode("\251\255\191"))
    assert.are.equal("__79_A", core.b64urlencode("\255\254\253\252"))
    assert.are.equal("", core.b64urlencode(""))
    assert.are.equal("YQ", core.b64urlencode("a"))
    assert.are.equal("YWI", core.b64urlencode("ab"))
    assert.are.equal("YWJj", core.b64urlencode("abc"))
  end)

  it("round-trips every length up to 70 and every byte value", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    for n = 0, 70 do
      local s = all:sub(256 - n, 255)
      local e = core.b64urlencode(s)
      assert.is_nil(e:find("[+/=]"))
      assert.are.equal(s, core.b64urldecode(e))
    end
    assert.are.equal(all, core.b64urldecode(core.b64urlencode(all)))
  end)

  it("matches core.b64encode with the alphabet swapped", function()
    local s = string.rep("\250\251\252\253\254\255", 100)
    local std = core.b64encode(s):gsub("=", ""):gsub("%+", "-"):gsub("/", "_")
    assert.are.equal(std, core.b64urlencode(s))
  end)

  it("accepts correct padding", function()
    assert.are.equal("a", core.b64urldecode("YQ=="))
    assert.are.equal("ab", core.b64urldecode("YWI="))
  end)

  it("decodes a JWK's x (a 32-byte Ed25519 key)", function()
    local x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    local raw = core.b64urldecode(x)
    assert.are.equal(32, #raw)
    -- RFC 8037 appendix A.2: the public key of RFC 8032's test 1.
    assert.are.equal("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", core.hexencode(raw))
    assert.are.equal(x, core.b64urlencode(raw))
  end)

  local bad = {
    { "a", "invalid base64url: length 1 is not possible" },
    { "abcde", "invalid base64url: length 5 is not possible" },
    { "ab+c", "invalid base64url at byte 3: unexpected character '+'" },
    { "ab/c", "invalid base64url at byte 3: unexpected character '/'" },
    { "ab c", "invalid base64url at byte 3: unexpected byte 0x20" },
    { "a*", "invalid base64url at byte 2: unexpected character '*'" },
    { "YR", "invalid base64url at byte 2: unused bits before the padding are not zero" },
    { "Y=Q=", nil },
  }
  for _, c in ipairs(bad) do
    it("refuses " .. string.format("%q", c[1]), function()
      local v, err = core.b64urldecode(c[1])
      assert.is_nil(v)
      assert.is_string(err)
      if c[2] then assert.are.equal(c[2], err) end
    end)
  end
end)
