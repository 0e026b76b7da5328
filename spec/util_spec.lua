-- vidu.core util: core.now, core.utf8_len and core.elide_data_uris.
local core = require("vidu.core")

-- "C3 A9" -> the two bytes 0xC3 0xA9 (Lua 5.1 has no "\x" escapes).
local function hex(s)
  return (s:gsub("(%x%x) ?", function(h) return string.char(tonumber(h, 16)) end))
end

describe("core.now", function()
  it("returns seconds as a number", function()
    assert.is_number(core.now())
    assert.is_true(core.now() > 0)
  end)

  it("never goes backwards and advances", function()
    local first = core.now()
    local prev, t = first, first
    -- Busy-wait until the clock moves: no fixed sleep, no timing assertion.
    for _ = 1, 1e7 do
      t = core.now()
      assert.is_true(t >= prev)
      prev = t
      if t > first then break end
    end
    assert.is_true(t > first)
  end)
end)

describe("core.utf8_len", function()
  -- { name, bytes, expected count (nil when invalid), 1-based offset of the first bad byte }
  local rows = {
    { "empty", "", 0 },
    { "ASCII", "hello, world", 12 },
    { "NUL is a character", "a\0b", 3 },
    { "DEL", hex("7F"), 1 },
    { "2-byte e-acute", "h" .. hex("C3 A9") .. "llo", 5 },
    { "2-byte lowest U+0080", hex("C2 80"), 1 },
    { "2-byte highest U+07FF", hex("DF BF"), 1 },
    { "3-byte lowest U+0800", hex("E0 A0 80"), 1 },
    { "3-byte euro sign", hex("E2 82 AC"), 1 },
    { "3-byte U+D7FF before surrogates", hex("ED 9F BF"), 1 },
    { "3-byte U+E000 after surrogates", hex("EE 80 80"), 1 },
    { "3-byte highest U+FFFF", hex("EF BF BF"), 1 },
    { "CJK", hex("E6 97 A5 E6 9C AC E8 AA 9E"), 3 },
    { "4-byte lowest U+10000", hex("F0 90 80 80"), 1 },
    { "4-byte emoji", hex("F0 9F 98 80"), 1 },
    { "4-byte highest U+10FFFF", hex("F4 8F BF BF"), 1 },
    { "mixed widths", "a" .. hex("E2 82 AC F0 9D 84 9E") .. "b" .. hex("C3 A9"), 5 },

    { "overlong NUL C0 80", hex("C0 80"), nil, 1 },
    { "overlong C1 BF", hex("C1 BF"), nil, 1 },
    { "overlong 3-byte E0 80 80", hex("E0 80 80"), nil, 1 },
    { "overlong 3-byte E0 9F BF", hex("E0 9F BF"), nil, 1 },
    { "overlong 4-byte F0 80 80 80", hex("F0 80 80 80"), nil, 1 },
    { "overlong 4-byte F0 8F BF BF", hex("F0 8F BF BF"), nil, 1 },
    { "surrogate U+D800", hex("ED A0 80"), nil, 1 },
    { "surrogate U+DFFF", hex("ED BF BF"), nil, 1 },
    { "CESU-8 surrogate pair", hex("ED A0 BD ED B8 80"), nil, 1 },
    { "U+110000", hex("F4 90 80 80"), nil, 1 },
    { "lead F5", hex("F5 80 80 80"), nil, 1 },
    { "lead F8 (5-byte form)", hex("F8 88 80 80 80"), nil, 1 },
    { "FE", hex("FE"), nil, 1 },
    { "FF", hex("FF"), nil, 1 },
    { "stray continuation", hex("80"), nil, 1 },
    { "stray continuation inside ASCII", "a" .. hex("BF") .. "b", nil, 2 },
    { "truncated 2-byte", hex("C3"), nil, 1 },
    { "truncated 3-byte", "ab" .. hex("E2 82"), nil, 3 },
    { "truncated 4-byte", hex("F0 9F 98"), nil, 1 },
    { "truncated 4-byte after ASCII", "x" .. hex("F0 9F"), nil, 2 },
    { "bad 2nd byte of 2", hex("C3 28"), nil, 1 },
    { "bad 2nd byte of 3", hex("E2 28 A1"), nil, 1 },
    { "bad 3rd byte of 3", hex("E2 82 28"), nil, 1 },
    { "bad 4th byte of 4", hex("F0 9F 98 28"), nil, 1 },
    { "offset after multibyte characters", "h" .. hex("C3 A9") .. "llo" .. hex("FF"), nil, 7 },
    { "offset after CJK", hex("E6 97 A5 E6 9C AC 80"), nil, 7 },
    { "offset of a truncated tail", "abc" .. hex("C3"), nil, 4 },
    { "first of two errors", "ok" .. hex("80") .. "ok" .. hex("FF"), nil, 3 },
  }

  for _, row in ipairs(rows) do
    local name, bytes, count, offset = row[1], row[2], row[3], row[4]
    it(name, function()
      local n, bad = core.utf8_len(bytes)
      if count then
        assert.are.equal(count, n)
        assert.is_nil(bad)
      else
        assert.is_nil(n)
        assert.are.equal(offset, bad)
      end
    end)
  end

  it("agrees with a long valid text", function()
    local unit = "a" .. hex("C3 A9 E2 82 AC F0 9F 98 80")
    assert.are.equal(4 * 10000, core.utf8_len(unit:rep(10000)))
  end)

  it("raises for a non-string", function()
    assert.has_error(function() core.utf8_len(nil) end)
    assert.has_error(function() core.utf8_len({}) end)
  end)
end)

describe("core.elide_data_uris", function()
  local json = require("vidu.json")
  local long = "data:image/jpeg;base64," .. string.rep("/9j+AAQSkZJRgABAQ", 20)
  local elide = core.elide_data_uris

  it("cuts each long data: URI string, its length counted as written", function()
    -- The encoder escapes '/' as '\/' (cjson does): the count is of the bytes in the text.
    local text = json.encode{ images = { long, "data:x" }, id = "7", nested = { { u = long } } }
    local written = #json.encode(long) - 2
    assert.is_true(written > #long) -- the escapes are there
    local out, n = elide(text, 64)
    assert.are.equal(2, n)
    local back = json.decode(out)
    local note = "data:... (" .. written .. " bytes, not kept)"
    assert.are.same({ note, "data:x" }, back.images)
    assert.are.equal(note, back.nested[1].u)
    assert.are.equal("7", back.id)
  end)

  it("keeps strings at or under the limit, other schemes, and any case of data:", function()
    local text = '[ "' .. long .. '", "http://x/' .. long .. '", "DaTa:' .. long:sub(6) .. '" ]'
    local out, n = elide(text, #long)
    assert.are.equal(0, n) -- exactly #long is not more than the limit
    assert.are.equal(text, out)
    out, n = elide(text, #long - 1)
    assert.are.equal(2, n)
    assert.are.same({ "data:... (" .. #long .. " bytes, not kept)", "http://x/" .. long,
      "data:... (" .. #long .. " bytes, not kept)" }, json.decode(out))
  end)

  it("tells strings from the text around them", function()
    -- A quote escaped inside a string does not end it: the data: after it is not a string's start.
    local text = '\n {"a":"x\\"' .. long .. '","' .. long .. '":1}'
    local out, n = elide(text, 64)
    assert.are.equal(1, n)
    assert.are.equal('\n {"a":"x\\"' .. long .. '","data:... (' .. #long .. ' bytes, not kept)":1}', out)
  end)

  it("leaves alone text that is not JSON, and ends an open data: URI as its note", function()
    for _, text in ipairs{ '<img src="' .. long .. '">', "", "   ", '{"u":"data:x', '["x\\' } do
      local out, n = elide(text, 64)
      assert.are.equal(text, out)
      assert.are.equal(0, n)
    end
    -- A cut answer: the open string is a note without its closing quote (still not JSON).
    for _, tail in ipairs{ "", "\\" } do
      local out, n = elide('{"u":"' .. long .. tail, 64)
      assert.are.equal('{"u":"data:... (' .. (#long + #tail) .. ' bytes, not kept)', out)
      assert.are.equal(1, n)
    end
  end)

  it("refuses a limit below 64 (a note must be shorter than what it replaces)", function()
    local ok, err = pcall(elide, "{}", 63)
    assert.is_false(ok)
    assert.matches("min must be at least 64", err)
    assert.has_error(function() elide(nil, 64) end)
  end)
end)
