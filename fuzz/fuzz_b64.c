/*
 * fuzz_b64.c: strict base64 (csrc/b64.c), every implementation the CPU has.
 *
 * The input is read twice. As base64 text, it is decoded by the scalar and the AVX2 decoder
 * and by a slow reference decoder written here from the rules in b64.h (6 bits at a time into
 * an accumulator, no tables): all three must agree on the status, the error offset, the
 * length and every byte, the length must be vidu_b64_decoded_len's, and valid text must
 * re-encode to itself (strict base64 has one encoding per byte string). As bytes, it is
 * encoded by both encoders, which must agree byte for byte, produce only the alphabet and
 * padding, and decode back to the input.
 */
#include "fuzz.h"
#include "b64.h"

/* The alphabet value of c, or -1 (the reference's own lookup, not b64.c's table). */
static int ref_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* The status for a byte found where an alphabet character must be. */
static int ref_bad(unsigned char c)
{
	return c == '=' ? VIDU_B64_BAD_PAD : VIDU_B64_BAD_CHAR;
}

/*
 * The rules of b64.h, checked in input order: every group but the last of a well-sized
 * input holds 4 alphabet characters; the last holds 2 alphabet characters and then "==",
 * 3 and "=", or 4 (a character after "=" is PAD_EXPECTED when in the alphabet), and the bits
 * that padding hides must be 0. A length that is not a multiple of 4 is TRUNCATED once all
 * the bytes before are fine ('=' third or fourth in the unfinished group is no error itself).
 */
static int ref_decode(const unsigned char *s, size_t n, unsigned char *out, size_t *outlen,
		size_t *errpos)
{
	size_t full = n / 4, i, o = 0, base, pads = 0;
	const unsigned char *p;
	uint32_t acc = 0;
	int bits = 0;

	if (n % 4 != 0) {
		for (i = 0; i < n; i++) {
			if (ref_value(s[i]) < 0 && !(i >= full * 4 + 2 && s[i] == '=')) {
				*errpos = i;
				return ref_bad(s[i]);
			}
		}
		*errpos = n;
		return VIDU_B64_TRUNCATED;
	}
	if (n == 0) {
		*outlen = 0;
		return VIDU_B64_OK;
	}
	base = n - 4;
	for (i = 0; i < base + 2; i++) {
		if (ref_value(s[i]) < 0) {
			*errpos = i;
			return ref_bad(s[i]);
		}
	}
	p = s + base;
	if (p[2] == '=') {
		if (p[3] != '=') {
			*errpos = base + 3;
			return ref_value(p[3]) >= 0 ? VIDU_B64_PAD_EXPECTED : VIDU_B64_BAD_CHAR;
		}
		pads = 2;
	} else if (ref_value(p[2]) < 0) {
		*errpos = base + 2;
		return VIDU_B64_BAD_CHAR;
	} else if (p[3] == '=') {
		pads = 1;
	} else if (ref_value(p[3]) < 0) {
		*errpos = base + 3;
		return VIDU_B64_BAD_CHAR;
	}
	for (i = 0; i < n - pads; i++) {
		acc = acc << 6 | (uint32_t)ref_value(s[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	if ((acc & ((1u << bits) - 1)) != 0) {
		*errpos = n - pads - 1;
		return VIDU_B64_NONZERO_BITS;
	}
	*outlen = o;
	return VIDU_B64_OK;
}

/* Decodes s[0..n) with impl into a buffer of exactly the documented size. */
static int decode(int impl, const unsigned char *s, size_t n, unsigned char **out,
		size_t *outlen, size_t *errpos)
{
	*out = fuzz_alloc(vidu_b64_decoded_len((const char *)s, n));
	*outlen = (size_t)-1;
	*errpos = (size_t)-1;
	return vidu_b64_decode_with(impl, (const char *)s, n, *out, outlen, errpos);
}

/* The input as base64 text. */
static void check_decode(const unsigned char *s, size_t n)
{
	static const int impls[] = { VIDU_B64_SCALAR, VIDU_B64_AVX2, VIDU_B64_AUTO };
	unsigned char *ref = fuzz_alloc(n / 4 * 3 + 3);
	size_t ref_len = (size_t)-1, ref_pos = (size_t)-1;
	int ref_st = ref_decode(s, n, ref, &ref_len, &ref_pos);
	size_t k;

	for (k = 0; k < sizeof(impls) / sizeof(impls[0]); k++) {
		unsigned char *out;
		size_t len, pos;
		int st;
		if (!vidu_b64_supported(impls[k]))
			continue;
		st = decode(impls[k], s, n, &out, &len, &pos);
		CHECK(st == ref_st);
		if (st == VIDU_B64_OK) {
			char *again;
			CHECK(len == ref_len);
			CHECK(len == vidu_b64_decoded_len((const char *)s, n));
			CHECK(len == 0 || memcmp(out, ref, len) == 0);
			/* Strict means canonical: the text is the one encoding of its bytes. */
			again = (char *)fuzz_alloc(vidu_b64_encoded_len(len));
			CHECK(vidu_b64_encoded_len(len) == n);
			vidu_b64_encode_with(impls[k], out, len, again);
			CHECK(n == 0 || memcmp(again, s, n) == 0);
			free(again);
		} else {
			CHECK(pos == ref_pos);
			CHECK(st == VIDU_B64_TRUNCATED ? pos == n : pos < n);
			CHECK(vidu_b64_strerror(st) != NULL);
		}
		free(out);
	}
	free(ref);
}

/* The input as bytes. */
static void check_encode(const unsigned char *p, size_t n)
{
	size_t m = vidu_b64_encoded_len(n), i, len, pos;
	char *scalar = (char *)fuzz_alloc(m), *avx2;
	unsigned char *back;

	CHECK(m == (n + 2) / 3 * 4);
	vidu_b64_encode_with(VIDU_B64_SCALAR, p, n, scalar);
	for (i = 0; i < m; i++)
		CHECK(ref_value((unsigned char)scalar[i]) >= 0 || (scalar[i] == '=' && i + 2 >= m));
	if (vidu_b64_supported(VIDU_B64_AVX2)) {
		avx2 = (char *)fuzz_alloc(m);
		vidu_b64_encode_with(VIDU_B64_AVX2, p, n, avx2);
		CHECK(m == 0 || memcmp(scalar, avx2, m) == 0);
		free(avx2);
	}
	CHECK(vidu_b64_decoded_len(scalar, m) == n);
	back = fuzz_alloc(n);
	CHECK(vidu_b64_decode_with(VIDU_B64_AUTO, scalar, m, back, &len, &pos) == VIDU_B64_OK);
	CHECK(len == n);
	CHECK(n == 0 || memcmp(back, p, n) == 0);
	free(back);
	free(scalar);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *s = fuzz_copy(data, size);
	check_decode(s, size);
	check_encode(s, size);
	free(s);
	return 0;
}
