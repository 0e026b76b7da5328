/*
 * fuzz_utf8.c: the strict UTF-8 counter (vidu_utf8_count in csrc/util.c, which
 * core.utf8_len runs).
 *
 * A reference decoder written here the other way round (read the lead byte's length from its
 * high bits, gather the code point, then reject overlong forms, surrogates and values above
 * U+10FFFF by value, not by second-byte ranges) must give the same count, or the same
 * offset of the first bad sequence. Valid input must re-encode from its code points to the
 * same bytes, and never count more characters than it has bytes.
 */
#include "fuzz.h"
#include "util.h"

/* Decodes one sequence at p[0..n): its code point and length, or 0 if it is not valid. */
static size_t ref_decode1(const unsigned char *p, size_t n, uint32_t *cp)
{
	static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t len, i;
	uint32_t v;
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if ((p[0] & 0xE0) == 0xC0) {
		len = 2;
		v = p[0] & 0x1F;
	} else if ((p[0] & 0xF0) == 0xE0) {
		len = 3;
		v = p[0] & 0x0F;
	} else if ((p[0] & 0xF8) == 0xF0) {
		len = 4;
		v = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		v = v << 6 | (p[i] & 0x3F);
	}
	if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
		return 0;
	*cp = v;
	return len;
}

/* Appends the UTF-8 form of cp at out; returns its length. */
static size_t ref_encode1(uint32_t cp, unsigned char *out)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xC0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xE0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (unsigned char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (unsigned char)(0xF0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (unsigned char)(0x80 | (cp & 0x3F));
	return 4;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *s = fuzz_copy(data, size), *again = fuzz_alloc(size);
	size_t bad = (size_t)-1, i = 0, o = 0, ref_bad = (size_t)-1;
	long count = vidu_utf8_count(s, size, &bad), ref_count = 0;

	while (i < size) {
		uint32_t cp = 0;
		size_t len = ref_decode1(s + i, size - i, &cp);
		if (len == 0) {
			ref_bad = i;
			ref_count = -1;
			break;
		}
		CHECK(ref_encode1(cp, again + o) == len);
		o += len;
		i += len;
		ref_count++;
	}
	CHECK(count == ref_count);
	if (count < 0) {
		CHECK(bad == ref_bad && bad < size);
	} else {
		CHECK((size_t)count <= size);
		CHECK(o == size && (size == 0 || memcmp(again, s, size) == 0));
	}
	free(again);
	free(s);
	return 0;
}
