/*
 * b64.c: RFC 4648 base64 at memory speed, and data: URIs.
 *
 * The first half is plain C over buffers (declared in b64.h): a scalar encoder that turns
 * 12 bits into two characters with one table load, a table-driven scalar decoder, and AVX2
 * versions of both, picked at run time with __builtin_cpu_supports. The vector code only
 * handles whole blocks in the middle; the scalar code always does the ends (padding, errors),
 * so both give identical output and identical error positions. The data: URI splitter is
 * plain C too, so the fuzz targets (fuzz/) exercise the very code the binding runs.
 *
 * The second half is the Lua binding (left out with -DVIDU_B64_NO_LUA). Output is built in a
 * GC-owned userdata (or a stack buffer when small) and then copied into a Lua string, so no
 * code path can raise while it owns malloc'd memory or an open FILE.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "b64.h"
#include "util.h"
#ifndef VIDU_B64_NO_LUA /* bench/b64_bench.c builds the plain C half alone (with util.c) */
#include "core.h"
#include "image.h"
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define B64_X86 1
#include <immintrin.h>
#else
#define B64_X86 0
#endif

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* All 64 pairs with first character c: one row of b64_pairs. */
#define PAIRS(c) \
	{c,'A'}, {c,'B'}, {c,'C'}, {c,'D'}, {c,'E'}, {c,'F'}, {c,'G'}, {c,'H'}, \
	{c,'I'}, {c,'J'}, {c,'K'}, {c,'L'}, {c,'M'}, {c,'N'}, {c,'O'}, {c,'P'}, \
	{c,'Q'}, {c,'R'}, {c,'S'}, {c,'T'}, {c,'U'}, {c,'V'}, {c,'W'}, {c,'X'}, \
	{c,'Y'}, {c,'Z'}, {c,'a'}, {c,'b'}, {c,'c'}, {c,'d'}, {c,'e'}, {c,'f'}, \
	{c,'g'}, {c,'h'}, {c,'i'}, {c,'j'}, {c,'k'}, {c,'l'}, {c,'m'}, {c,'n'}, \
	{c,'o'}, {c,'p'}, {c,'q'}, {c,'r'}, {c,'s'}, {c,'t'}, {c,'u'}, {c,'v'}, \
	{c,'w'}, {c,'x'}, {c,'y'}, {c,'z'}, {c,'0'}, {c,'1'}, {c,'2'}, {c,'3'}, \
	{c,'4'}, {c,'5'}, {c,'6'}, {c,'7'}, {c,'8'}, {c,'9'}, {c,'+'}, {c,'/'}

/* The two characters of every 12-bit value: 8 KB, so 3 input bytes cost two loads. */
static const char b64_pairs[4096][2] = {
	PAIRS('A'), PAIRS('B'), PAIRS('C'), PAIRS('D'), PAIRS('E'), PAIRS('F'), PAIRS('G'), PAIRS('H'),
	PAIRS('I'), PAIRS('J'), PAIRS('K'), PAIRS('L'), PAIRS('M'), PAIRS('N'), PAIRS('O'), PAIRS('P'),
	PAIRS('Q'), PAIRS('R'), PAIRS('S'), PAIRS('T'), PAIRS('U'), PAIRS('V'), PAIRS('W'), PAIRS('X'),
	PAIRS('Y'), PAIRS('Z'), PAIRS('a'), PAIRS('b'), PAIRS('c'), PAIRS('d'), PAIRS('e'), PAIRS('f'),
	PAIRS('g'), PAIRS('h'), PAIRS('i'), PAIRS('j'), PAIRS('k'), PAIRS('l'), PAIRS('m'), PAIRS('n'),
	PAIRS('o'), PAIRS('p'), PAIRS('q'), PAIRS('r'), PAIRS('s'), PAIRS('t'), PAIRS('u'), PAIRS('v'),
	PAIRS('w'), PAIRS('x'), PAIRS('y'), PAIRS('z'), PAIRS('0'), PAIRS('1'), PAIRS('2'), PAIRS('3'),
	PAIRS('4'), PAIRS('5'), PAIRS('6'), PAIRS('7'), PAIRS('8'), PAIRS('9'), PAIRS('+'), PAIRS('/'),
};
#undef PAIRS

/* Character -> 6-bit value; 255 for everything outside the alphabet, '=' included. */
static const unsigned char b64_values[256] = {
	255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,
	255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,
	255,255,255,255,255,255,255,255,255,255,255, 62,255,255,255, 63,
	 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,255,255,255,255,255,255,
	255,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
	 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,255,255,255,255,255,
	255, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51,255,255,255,255,255,
	255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,
	255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,
	255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,
	255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,
	255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,
	255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,
	255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,
	255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,
};

/* ---------------------------------------------------------------------------------------- */
/* Scalar code: always compiled, always tested. */

/* Reads 8 bytes as a big-endian integer (compilers turn this into one load and a bswap). */
static inline uint64_t load_be64(const unsigned char *p)
{
	return (uint64_t)p[0] << 56 | (uint64_t)p[1] << 48 | (uint64_t)p[2] << 40 |
		(uint64_t)p[3] << 32 | (uint64_t)p[4] << 24 | (uint64_t)p[5] << 16 |
		(uint64_t)p[6] << 8 | (uint64_t)p[7];
}

/* Encodes s[0..n) into d with padding; the portable path and the tail of the vector one. */
static void encode_scalar(const unsigned char *s, size_t n, char *d)
{
	size_t i = 0;
	/* 6 bytes -> 8 characters per step, from one 8-byte load of which 48 bits are used. */
	while (n - i >= 8) {
		uint64_t v = load_be64(s + i);
		memcpy(d, b64_pairs[(v >> 52) & 0xfff], 2);
		memcpy(d + 2, b64_pairs[(v >> 40) & 0xfff], 2);
		memcpy(d + 4, b64_pairs[(v >> 28) & 0xfff], 2);
		memcpy(d + 6, b64_pairs[(v >> 16) & 0xfff], 2);
		i += 6;
		d += 8;
	}
	while (n - i >= 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		memcpy(d, b64_pairs[v >> 12], 2);
		memcpy(d + 2, b64_pairs[v & 0xfff], 2);
		i += 3;
		d += 4;
	}
	if (n - i == 1) {
		d[0] = b64_alphabet[s[i] >> 2];
		d[1] = b64_alphabet[(s[i] & 0x03) << 4];
		d[2] = '=';
		d[3] = '=';
	} else if (n - i == 2) {
		d[0] = b64_alphabet[s[i] >> 2];
		d[1] = b64_alphabet[(s[i] & 0x03) << 4 | s[i + 1] >> 4];
		d[2] = b64_alphabet[(s[i + 1] & 0x0f) << 2];
		d[3] = '=';
	}
}

/* Decodes nquads groups of 4 characters, none of them padding, into 3 bytes each. Returns
 * the number of groups done: nquads, or the index of the first group with a bad byte. */
static size_t decode_quads_scalar(const unsigned char *s, size_t nquads, unsigned char *d)
{
	size_t q;
	for (q = 0; q < nquads; q++) {
		uint32_t a = b64_values[s[0]], b = b64_values[s[1]];
		uint32_t c = b64_values[s[2]], e = b64_values[s[3]];
		uint32_t v;
		if ((a | b | c | e) & 0x80)
			return q;
		v = a << 18 | b << 12 | c << 6 | e;
		d[0] = (unsigned char)(v >> 16);
		d[1] = (unsigned char)(v >> 8);
		d[2] = (unsigned char)v;
		s += 4;
		d += 3;
	}
	return nquads;
}

/* ---------------------------------------------------------------------------------------- */
/* AVX2 code: 24 bytes <-> 32 characters per step, in the middle of the buffer only. */

#if B64_X86

/*
 * Encodes whole 24-byte blocks while 28 bytes can be read (two 16-byte loads, 12 bytes
 * apart). Returns the number of input bytes done, a multiple of 24; the caller finishes.
 *
 * Each 128-bit lane gets 12 input bytes, shuffled so every 32-bit word holds one 3-byte
 * group as [b1 b0 b2 b1]. Two masked 16-bit multiplies then move the four 6-bit fields to
 * the four bytes of the word, and a 16-entry shuffle table adds the offset that maps each
 * range of values (A-Z, a-z, 0-9, '+', '/') to its ASCII character.
 */
__attribute__((target("avx2")))
static size_t encode_avx2(const unsigned char *s, size_t n, char *d)
{
	const __m256i spread = _mm256_setr_epi8(
		1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10,
		1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
	const __m256i mask_ac = _mm256_set1_epi32(0x0fc0fc00);
	const __m256i mul_ac = _mm256_set1_epi32(0x04000040);
	const __m256i mask_bd = _mm256_set1_epi32(0x003f03f0);
	const __m256i mul_bd = _mm256_set1_epi32(0x01000010);
	/* Offset to add, by class: 0 = a-z, 1..10 = 0-9, 11 = '+', 12 = '/', 13 = A-Z. */
	const __m256i offsets = _mm256_setr_epi8(
		71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 65, 0, 0,
		71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 65, 0, 0);
	const __m256i k51 = _mm256_set1_epi8(51), k26 = _mm256_set1_epi8(26);
	const __m256i k13 = _mm256_set1_epi8(13);
	size_t i = 0;

	while (n - i >= 28) {
		__m128i lo = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
		__m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 12));
		__m256i in = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
		__m256i ac, bd, idx, cls, out;

		in = _mm256_shuffle_epi8(in, spread);
		ac = _mm256_mulhi_epu16(_mm256_and_si256(in, mask_ac), mul_ac);
		bd = _mm256_mullo_epi16(_mm256_and_si256(in, mask_bd), mul_bd);
		idx = _mm256_or_si256(ac, bd);
		/* 52..63 -> 1..12, the rest -> 0; then 0..25 -> 13. */
		cls = _mm256_subs_epu8(idx, k51);
		cls = _mm256_or_si256(cls, _mm256_and_si256(_mm256_cmpgt_epi8(k26, idx), k13));
		out = _mm256_add_epi8(idx, _mm256_shuffle_epi8(offsets, cls));
		_mm256_storeu_si256((__m256i *)(void *)(d + i / 3 * 4), out);
		i += 24;
	}
	return i;
}

/*
 * Decodes whole blocks of 8 groups (32 characters -> 24 bytes), none of them padding.
 * Returns the number of groups done, a multiple of 8; it stops before a block holding any
 * byte outside the alphabet and leaves that block to the scalar code, which finds the byte.
 *
 * Validity: every byte's high nibble selects a class bit (lut_hi) and its low nibble the set
 * of classes for which that low nibble is invalid (lut_lo); the AND is zero only for the 64
 * alphabet characters. Translation adds an offset chosen by the high nibble ('/' moved to a
 * slot of its own since it shares the nibble with '+'). Packing uses two multiply-adds to
 * join 4 x 6 bits into 24, a shuffle to put the 3 bytes in order, and a cross-lane permute.
 */
__attribute__((target("avx2")))
static size_t decode_quads_avx2(const unsigned char *s, size_t nquads, unsigned char *d)
{
	const __m256i lut_lo = _mm256_setr_epi8(
		0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
		0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a,
		0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
		0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a);
	const __m256i lut_hi = _mm256_setr_epi8(
		0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08,
		0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
		0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08,
		0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
	const __m256i lut_shift = _mm256_setr_epi8(
		0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0,
		0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
	const __m256i nibble = _mm256_set1_epi8(0x0f), slash = _mm256_set1_epi8('/');
	const __m256i join12 = _mm256_set1_epi32(0x01400140);
	const __m256i join24 = _mm256_set1_epi32(0x00011000);
	const __m256i order = _mm256_setr_epi8(
		2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
		2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
	const __m256i pack = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7);
	size_t q = 0;

	while (nquads - q >= 8) {
		__m256i in = _mm256_loadu_si256((const __m256i *)(const void *)(s + q * 4));
		__m256i hi = _mm256_and_si256(_mm256_srli_epi32(in, 4), nibble);
		__m256i lo = _mm256_and_si256(in, nibble);
		__m256i bad = _mm256_and_si256(_mm256_shuffle_epi8(lut_lo, lo),
				_mm256_shuffle_epi8(lut_hi, hi));
		__m256i v;
		if (!_mm256_testz_si256(bad, bad))
			break;
		hi = _mm256_add_epi8(hi, _mm256_cmpeq_epi8(in, slash));
		v = _mm256_add_epi8(in, _mm256_shuffle_epi8(lut_shift, hi));
		v = _mm256_maddubs_epi16(v, join12);
		v = _mm256_madd_epi16(v, join24);
		v = _mm256_shuffle_epi8(v, order);
		v = _mm256_permutevar8x32_epi32(v, pack);
		_mm_storeu_si128((__m128i *)(void *)(d + q * 3), _mm256_castsi256_si128(v));
		_mm_storel_epi64((__m128i *)(void *)(d + q * 3 + 16), _mm256_extracti128_si256(v, 1));
		q += 8;
	}
	return q;
}

#endif /* B64_X86 */

/* ---------------------------------------------------------------------------------------- */
/* Public C API (b64.h). */

/* Resolves VIDU_B64_AUTO and unsupported choices to the implementation that will run. */
static int resolve_impl(int impl)
{
	if (impl == VIDU_B64_AVX2 || impl == VIDU_B64_AUTO)
		return vidu_b64_supported(VIDU_B64_AVX2) ? VIDU_B64_AVX2 : VIDU_B64_SCALAR;
	return VIDU_B64_SCALAR;
}

/* Whether the CPU can run impl. */
int vidu_b64_supported(int impl)
{
	if (impl == VIDU_B64_AVX2) {
#if B64_X86
		return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
		return 0;
#endif
	}
	return impl == VIDU_B64_AUTO || impl == VIDU_B64_SCALAR;
}

/* Name of impl, or of what VIDU_B64_AUTO resolves to. */
const char *vidu_b64_impl_name(int impl)
{
	return resolve_impl(impl) == VIDU_B64_AVX2 ? "avx2" : "scalar";
}

/* 4 * ceil(n / 3), or 0 if that overflows. */
size_t vidu_b64_encoded_len(size_t n)
{
	size_t groups = n / 3 + (n % 3 != 0);
	if (groups > SIZE_MAX / 4)
		return 0;
	return groups * 4;
}

/* Encodes with the chosen implementation; the vector one does the middle, scalar the rest. */
void vidu_b64_encode_with(int impl, const unsigned char *src, size_t n, char *dst)
{
	size_t done = 0;
#if B64_X86
	if (resolve_impl(impl) == VIDU_B64_AVX2)
		done = encode_avx2(src, n, dst);
#else
	(void)impl;
#endif
	encode_scalar(src + done, n - done, dst + done / 3 * 4);
}

/* Encodes with the fastest implementation the CPU has. */
void vidu_b64_encode(const unsigned char *src, size_t n, char *dst)
{
	vidu_b64_encode_with(VIDU_B64_AUTO, src, n, dst);
}

/* Exact decoded size of valid input; an upper bound of what the decoder writes otherwise. */
size_t vidu_b64_decoded_len(const char *src, size_t n)
{
	size_t len = n / 4 * 3;
	if (n == 0 || n % 4 != 0)
		return len;
	if (src[n - 1] == '=')
		len -= (src[n - 2] == '=') ? 2 : 1;
	return len;
}

/* Classifies a byte found where an alphabet character must be. */
static int bad_byte_status(unsigned char c)
{
	return c == '=' ? VIDU_B64_BAD_PAD : VIDU_B64_BAD_CHAR;
}

/*
 * Checks and decodes the last group of 4, which alone may hold padding: "xx==" gives one
 * byte, "xxx=" two, "xxxx" three. p points at the group, base is its offset in the input.
 */
static int decode_final(const unsigned char *p, size_t base, unsigned char *d, size_t *len,
		size_t *errpos)
{
	unsigned a = b64_values[p[0]], b = b64_values[p[1]], c, e;
	if (a > 63) {
		*errpos = base;
		return bad_byte_status(p[0]);
	}
	if (b > 63) {
		*errpos = base + 1;
		return bad_byte_status(p[1]);
	}
	if (p[2] == '=') {
		if (p[3] != '=') {
			*errpos = base + 3;
			return b64_values[p[3]] > 63 ? VIDU_B64_BAD_CHAR : VIDU_B64_PAD_EXPECTED;
		}
		if (b & 0x0f) {
			*errpos = base + 1;
			return VIDU_B64_NONZERO_BITS;
		}
		d[0] = (unsigned char)(a << 2 | b >> 4);
		*len = 1;
		return VIDU_B64_OK;
	}
	c = b64_values[p[2]];
	if (c > 63) {
		*errpos = base + 2;
		return VIDU_B64_BAD_CHAR;
	}
	if (p[3] == '=') {
		if (c & 0x03) {
			*errpos = base + 2;
			return VIDU_B64_NONZERO_BITS;
		}
		d[0] = (unsigned char)(a << 2 | b >> 4);
		d[1] = (unsigned char)((b & 0x0f) << 4 | c >> 2);
		*len = 2;
		return VIDU_B64_OK;
	}
	e = b64_values[p[3]];
	if (e > 63) {
		*errpos = base + 3;
		return VIDU_B64_BAD_CHAR;
	}
	d[0] = (unsigned char)(a << 2 | b >> 4);
	d[1] = (unsigned char)((b & 0x0f) << 4 | c >> 2);
	d[2] = (unsigned char)((c & 0x03) << 6 | e);
	*len = 3;
	return VIDU_B64_OK;
}

/* Strict decode with the chosen implementation (see b64.h). Errors are reported in input
 * order: the first offending byte wins, a bad length only counts when all bytes are fine. */
int vidu_b64_decode_with(int impl, const char *src, size_t n, unsigned char *dst,
		size_t *outlen, size_t *errpos)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t full = n / 4, rem = n % 4;
	/* Groups that cannot hold padding: all but the last when the length is right. */
	size_t body = (rem == 0 && full > 0) ? full - 1 : full;
	size_t done = 0, k, last = 0;

#if B64_X86
	if (resolve_impl(impl) == VIDU_B64_AVX2)
		done = decode_quads_avx2(s, body, dst);
#else
	(void)impl;
#endif
	done += decode_quads_scalar(s + done * 4, body - done, dst + done * 3);
	if (done < body) {
		const unsigned char *p = s + done * 4;
		for (k = 0; k < 3 && b64_values[p[k]] <= 63; k++)
			;
		*errpos = done * 4 + k;
		return bad_byte_status(p[k]);
	}
	if (rem == 0) {
		if (full > 0) {
			int st = decode_final(s + body * 4, body * 4, dst + body * 3, &last, errpos);
			if (st != VIDU_B64_OK)
				return st;
		}
		*outlen = body * 3 + last;
		return VIDU_B64_OK;
	}
	/* 1 to 3 characters left over: report a bad one if any, else the length. */
	for (k = 0; k < rem; k++) {
		unsigned char c = s[full * 4 + k];
		if (b64_values[c] > 63 && !(c == '=' && k >= 2)) {
			*errpos = full * 4 + k;
			return bad_byte_status(c);
		}
	}
	*errpos = n;
	return VIDU_B64_TRUNCATED;
}

/* Strict decode with the fastest implementation the CPU has. */
int vidu_b64_decode(const char *src, size_t n, unsigned char *dst, size_t *outlen,
		size_t *errpos)
{
	return vidu_b64_decode_with(VIDU_B64_AUTO, src, n, dst, outlen, errpos);
}

/* Words for each decoder status. */
const char *vidu_b64_strerror(int status)
{
	switch (status) {
	case VIDU_B64_OK: return "ok";
	case VIDU_B64_BAD_CHAR: return "not a base64 character";
	case VIDU_B64_BAD_PAD: return "misplaced padding '='";
	case VIDU_B64_PAD_EXPECTED: return "expected padding '=' after '='";
	case VIDU_B64_NONZERO_BITS: return "unused bits before the padding are not zero";
	case VIDU_B64_TRUNCATED: return "length is not a multiple of 4";
	default: return "unknown error";
	}
}

/* The base64 data: URI splitter (see b64.h): the header checks of RFC 2397 that matter for
 * images, in the order that gives the most useful message. */
const char *vidu_data_uri_split(const char *uri, size_t n, struct vidu_data_uri *out)
{
	const char *comma;
	size_t metalen;
	if (n < 5 || !vidu_ascii_ieq(uri, "data:", 5))
		return "not a data: URI";
	comma = (const char *)memchr(uri + 5, ',', n - 5);
	if (comma == NULL)
		return "data: URI has no ',' before its data";
	metalen = (size_t)(comma - (uri + 5));
	if (metalen < 7 || !vidu_ascii_ieq(comma - 7, ";base64", 7))
		return "data: URI is not base64 (only ';base64,' data URIs are supported)";
	out->mime = uri + 5;
	out->mime_len = metalen - 7;
	out->payload = comma + 1;
	out->payload_len = n - (size_t)(out->payload - uri);
	return NULL;
}

#ifndef VIDU_B64_NO_LUA

/* ---------------------------------------------------------------------------------------- */
/* Lua binding. The functions share one upvalue: the implementation to use (settings live
 * in an upvalue, not a global, so two Lua states never affect each other). */

struct b64_conf {
	int impl;
};

/* Outputs up to this size are built on the C stack instead of in a userdata. */
#define B64_STACK_BUF 512

/* File reads for data_uri_file: a multiple of 3, so only the last piece can need padding. */
#define B64_FILE_CHUNK (3 * 256 * 1024)

/* The implementation chosen for this Lua state. */
static int conf_impl(lua_State *L)
{
	struct b64_conf *conf = (struct b64_conf *)lua_touserdata(L, lua_upvalueindex(1));
	return conf->impl;
}

/* A scratch buffer of n bytes: the stack one when it fits, else a new userdata that the
 * GC owns (pushed on the stack, so raising later leaks nothing). */
static char *scratch(lua_State *L, char *stackbuf, size_t n)
{
	if (n <= B64_STACK_BUF)
		return stackbuf;
	return (char *)lua_newuserdata(L, n);
}

/* Pushes nil and "<prefix>invalid base64 at byte N: <why>" (N 1-based); returns 2. */
static int push_decode_error(lua_State *L, const char *prefix, int status, size_t pos,
		const char *s, size_t n)
{
	char why[96], num[32];
	if (status == VIDU_B64_BAD_CHAR) {
		unsigned char c = (unsigned char)s[pos];
		if (c > 0x20 && c < 0x7f)
			snprintf(why, sizeof why, "unexpected character '%c' (0x%02X)", c, c);
		else
			snprintf(why, sizeof why, "unexpected byte 0x%02X", c);
	} else if (status == VIDU_B64_TRUNCATED) {
		snprintf(why, sizeof why, "input ends inside a group of 4 (length %lu is not a "
				"multiple of 4)", (unsigned long)n);
	} else {
		snprintf(why, sizeof why, "%s", vidu_b64_strerror(status));
	}
	snprintf(num, sizeof num, "%lu", (unsigned long)pos + 1);
	lua_pushnil(L);
	lua_pushfstring(L, "%sinvalid base64 at byte %s: %s", prefix, num, why);
	return 2;
}

/* core.b64encode(s) -> base64 text of s (padded). */
static int l_b64encode(lua_State *L)
{
	size_t n, m;
	const char *s = luaL_checklstring(L, 1, &n);
	char stackbuf[B64_STACK_BUF], *out;
	m = vidu_b64_encoded_len(n);
	if (n > 0 && m == 0)
		return luaL_error(L, "b64encode: input too large");
	out = scratch(L, stackbuf, m);
	vidu_b64_encode_with(conf_impl(L), (const unsigned char *)s, n, out);
	lua_pushlstring(L, out, m);
	return 1;
}

/* core.b64decode(s) -> bytes | nil, "invalid base64 at byte N: ..." (strict). */
static int l_b64decode(lua_State *L)
{
	size_t n, len = 0, pos = 0;
	const char *s = luaL_checklstring(L, 1, &n);
	char stackbuf[B64_STACK_BUF], *out = scratch(L, stackbuf, vidu_b64_decoded_len(s, n));
	int st = vidu_b64_decode_with(conf_impl(L), s, n, (unsigned char *)out, &len, &pos);
	if (st != VIDU_B64_OK)
		return push_decode_error(L, "", st, pos, s, n);
	lua_pushlstring(L, out, len);
	return 1;
}

/* Checks an optional mime argument: printable ASCII without spaces or ','. Returns it or
 * NULL when absent; raises for a bad one (a programmer's mistake). */
static const char *opt_mime(lua_State *L, int arg, size_t *len)
{
	size_t i;
	const char *mime = luaL_optlstring(L, arg, NULL, len);
	if (mime == NULL)
		return NULL;
	if (*len == 0)
		luaL_argerror(L, arg, "empty mime type");
	for (i = 0; i < *len; i++) {
		unsigned char c = (unsigned char)mime[i];
		if (c <= 0x20 || c >= 0x7f || c == ',')
			luaL_argerror(L, arg, "invalid mime type");
	}
	return mime;
}

/* Size of "data:<mime>;base64,<enc>" for a payload of n bytes; 0 on overflow. */
static size_t data_uri_len(size_t mimelen, size_t n)
{
	size_t enc = vidu_b64_encoded_len(n), head = 5 + mimelen + 8;
	if ((n > 0 && enc == 0) || enc > SIZE_MAX - head)
		return 0;
	return head + enc;
}

/* Writes "data:<mime>;base64," at out; returns the header length. */
static size_t write_data_uri_head(char *out, const char *mime, size_t mimelen)
{
	memcpy(out, "data:", 5);
	memcpy(out + 5, mime, mimelen);
	memcpy(out + 5 + mimelen, ";base64,", 8);
	return 5 + mimelen + 8;
}

/* core.data_uri(bytes [, mime]) -> "data:<mime>;base64,<...>"; mime sniffed if absent. */
static int l_data_uri(lua_State *L)
{
	size_t n, mimelen = 0, total, head;
	const char *s = luaL_checklstring(L, 1, &n);
	const char *mime = opt_mime(L, 2, &mimelen);
	char stackbuf[B64_STACK_BUF], *out;
	if (mime == NULL) {
		mime = vidu_image_sniff_mime((const unsigned char *)s, n);
		if (mime == NULL)
			return luaL_error(L, "data_uri: the bytes are not a PNG, JPEG or WebP image; "
					"pass a mime type");
		mimelen = strlen(mime);
	}
	total = data_uri_len(mimelen, n);
	if (total == 0)
		return luaL_error(L, "data_uri: input too large");
	out = scratch(L, stackbuf, total);
	head = write_data_uri_head(out, mime, mimelen);
	vidu_b64_encode_with(conf_impl(L), (const unsigned char *)s, n, out + head);
	lua_pushlstring(L, out, total);
	return 1;
}

/*
 * core.data_uri_file(path [, mime]) -> data URI | nil, "<path>: <why>".
 *
 * The file is read once, in pieces of B64_FILE_CHUNK bytes, each encoded straight into the
 * output; the first piece also tells the mime type. All Lua memory is taken before the file
 * is opened, so nothing can raise while the FILE is open.
 */
static int l_data_uri_file(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t mimelen = 0, size, total, pos, done = 0, chunk_cap;
	const char *mime = opt_mime(L, 2, &mimelen);
	const char *why = vidu_file_size(path, &size);
	unsigned char *chunk;
	char *out;
	FILE *f;
	int impl = conf_impl(L), err = 0, first = 1;

	if (why != NULL) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, why);
		return 2;
	}
	/* Room for the longest mime we may sniff ("image/jpeg", "image/webp"). */
	total = data_uri_len(mime != NULL ? mimelen : 10, size);
	if (total == 0)
		return luaL_error(L, "data_uri_file: %s: file too large", path);
	chunk_cap = size < B64_FILE_CHUNK ? (size > 0 ? size : 1) : B64_FILE_CHUNK;
	chunk = (unsigned char *)lua_newuserdata(L, chunk_cap);
	out = (char *)lua_newuserdata(L, total);

	/* From here to fclose: no Lua calls that can raise. */
	f = fopen(path, "rb");
	if (f == NULL) {
		err = errno;
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, strerror(err));
		return 2;
	}
	pos = 0;
	for (;;) {
		size_t want = size - done < chunk_cap ? size - done : chunk_cap;
		size_t got = vidu_read_full(f, chunk, want);
		if (got < want) {
			if (ferror(f))
				err = errno ? errno : EIO;
			else
				why = "file shrank while being read";
			break;
		}
		if (first) {
			first = 0;
			if (mime == NULL) {
				mime = vidu_image_sniff_mime(chunk, got);
				if (mime == NULL) {
					why = "not a PNG, JPEG or WebP image (pass a mime type)";
					break;
				}
				mimelen = strlen(mime);
			}
			pos = write_data_uri_head(out, mime, mimelen);
		}
		vidu_b64_encode_with(impl, chunk, got, out + pos);
		pos += vidu_b64_encoded_len(got);
		done += got;
		if (done == size) {
			if (fgetc(f) != EOF)
				why = "file grew while being read";
			else if (ferror(f))
				err = errno ? errno : EIO;
			break;
		}
	}
	fclose(f);

	if (err != 0 || why != NULL) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, why != NULL ? why : strerror(err));
		return 2;
	}
	lua_pushlstring(L, out, pos);
	return 1;
}

/* core.parse_data_uri(uri) -> mime, bytes | nil, err. Only base64 data: URIs (RFC 2397);
 * an empty media type means "text/plain;charset=US-ASCII" as the RFC says. */
static int l_parse_data_uri(lua_State *L)
{
	size_t n, len = 0, pos = 0;
	const char *uri = luaL_checklstring(L, 1, &n);
	struct vidu_data_uri parts;
	const char *why = vidu_data_uri_split(uri, n, &parts);
	char stackbuf[B64_STACK_BUF], *out;
	int st;

	if (why != NULL) {
		lua_pushnil(L);
		lua_pushstring(L, why);
		return 2;
	}
	out = scratch(L, stackbuf, vidu_b64_decoded_len(parts.payload, parts.payload_len));
	st = vidu_b64_decode_with(conf_impl(L), parts.payload, parts.payload_len,
			(unsigned char *)out, &len, &pos);
	if (st != VIDU_B64_OK)
		return push_decode_error(L, "data: URI payload: ", st, pos, parts.payload,
				parts.payload_len);
	if (parts.mime_len == 0)
		lua_pushliteral(L, "text/plain;charset=US-ASCII");
	else
		lua_pushlstring(L, parts.mime, parts.mime_len);
	lua_pushlstring(L, out, len);
	return 2;
}

/* core.b64_impl([name]) -> name of the implementation in use ("avx2" or "scalar"). With
 * name ("auto", "scalar", "avx2") it first switches this Lua state to it: for tests and
 * benchmarks. Asking for one the CPU lacks raises. */
static int l_b64_impl(lua_State *L)
{
	static const char *const names[] = { "auto", "scalar", "avx2", NULL };
	static const int impls[] = { VIDU_B64_AUTO, VIDU_B64_SCALAR, VIDU_B64_AVX2 };
	struct b64_conf *conf = (struct b64_conf *)lua_touserdata(L, lua_upvalueindex(1));
	if (!lua_isnoneornil(L, 1)) {
		int impl = impls[luaL_checkoption(L, 1, NULL, names)];
		if (!vidu_b64_supported(impl))
			return luaL_error(L, "b64_impl: %s is not supported on this CPU",
					lua_tostring(L, 1));
		conf->impl = impl;
	}
	lua_pushstring(L, vidu_b64_impl_name(conf->impl));
	return 1;
}

static const luaL_Reg b64_funcs[] = {
	{ "b64encode", l_b64encode },
	{ "b64decode", l_b64decode },
	{ "data_uri", l_data_uri },
	{ "data_uri_file", l_data_uri_file },
	{ "parse_data_uri", l_parse_data_uri },
	{ "b64_impl", l_b64_impl },
	{ NULL, NULL }
};

/* Adds the base64 functions to the module table at the top of the stack, sharing one
 * settings userdata as their upvalue. */
void vidu_open_b64(lua_State *L)
{
	struct b64_conf *conf = (struct b64_conf *)lua_newuserdata(L, sizeof *conf);
	conf->impl = VIDU_B64_AUTO;
	luaL_setfuncs(L, b64_funcs, 1);
}

#endif /* VIDU_B64_NO_LUA */
