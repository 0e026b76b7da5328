/*
 * fuzz_elide.c: the streaming cutter of data: URIs in JSON text (vidu_elide_init,
 * vidu_elide_feed and vidu_elide_end in csrc/util.c, which the engine runs on answers as they
 * arrive and core.elide_data_uris runs on a string).
 *
 * The first two bytes pick the limit min (mostly 64..575; sometimes below 64, where the text
 * must pass as it is; sometimes near SIZE_MAX, where nothing is ever cut) and, with the top
 * bit of the second, whether a '*' in the text stands for 63 more copies of the byte before it
 * (so that a few bytes make the long strings a cut needs). The rest is the text. It is fed
 *   - whole, in one call;
 *   - in pieces whose lengths a generator seeded by a hash of the input draws (0 and 1 byte
 *     pieces among them), after a few bytes the elider must leave alone are already in out;
 *   - one byte at a time, with empty feeds between.
 * Every piece is copied into a buffer of exactly its size. All three must give the same bytes
 * and the same count, and so must a reference written here from the contract in util.h: a
 * whole-text walk, a byte at a time with an escape flag, that decides each string only at its
 * closing quote (or at the end of the text) from the input. Between the pieces, what the
 * elider has put out must be the reference's output for the text so far, except that of a
 * string still open it holds at most its content so far, and at most min bytes of one that
 * begins "data:". The output is never longer than the input, and the count is at most the
 * number of '"' in it.
 */
#include <stdint.h>

#include "fuzz.h"
#include "buf.h"
#include "util.h"

/* The longest text the '*' expansion makes. */
#define EXPAND_MAX 8192

/* ---------------------------------------------------------------- reference */

struct ref {
	unsigned char *p;   /* the output, cap bytes */
	size_t len, cap;
	size_t count;       /* strings cut */
	int open;           /* a string is open at the end of the text */
	size_t open_start;  /* if so: the input offset of its content */
	size_t open_len;    /* its content's length */
	size_t settled;     /* the output's length before its content */
	int open_data;      /* its content begins "data:" (any case) */
};

static void ref_emit(struct ref *r, const void *s, size_t n)
{
	CHECK(n <= r->cap - r->len);
	if (n > 0)
		memcpy(r->p + r->len, s, n);
	r->len += n;
}

static int ref_blank(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Whether s[0..n) begins "data:" in any case (ASCII folding only). Folded first and then
 * compared whole with memcmp, which libFuzzer watches: byte compares alone (util.c's) give it
 * nothing to splice into the input without -use_value_profile, and "data:" is never found. */
static int ref_data(const unsigned char *s, size_t n)
{
	unsigned char low[5];
	size_t i;
	if (n < 5)
		return 0;
	for (i = 0; i < 5; i++)
		low[i] = s[i] >= 'A' && s[i] <= 'Z' ? (unsigned char)(s[i] | 0x20) : s[i];
	return memcmp(low, "data:", 5) == 0;
}

/* Emits the content s[0..n) of a string whose opening quote is already out, and its closing
 * quote when it has one. */
static void ref_string(struct ref *r, const unsigned char *s, size_t n, size_t min, int closed)
{
	if (n > min && ref_data(s, n)) {
		char digits[32];
		size_t k = 0, v = n;
		do {
			digits[k++] = (char)('0' + v % 10);
			v /= 10;
		} while (v > 0);
		ref_emit(r, "data:... (", 10);
		while (k > 0)
			ref_emit(r, &digits[--k], 1);
		ref_emit(r, " bytes, not kept)", 17);
		r->count++;
	} else {
		ref_emit(r, s, n);
	}
	if (closed)
		ref_emit(r, "\"", 1);
}

/* The contract of util.h on the whole text t[0..n). */
static void ref_elide(const unsigned char *t, size_t n, size_t min, struct ref *r)
{
	size_t i = 0, start = 0;
	int in = 0, esc = 0;

	r->len = 0;
	r->count = 0;
	r->open = 0;
	while (i < n && ref_blank(t[i]))
		i++;
	if (min < VIDU_ELIDE_MIN || i == n || (t[i] != '{' && t[i] != '[')) {
		ref_emit(r, t, n);
		return;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = t[i];
		if (!in) {
			ref_emit(r, &c, 1);
			if (c == '"') {
				in = 1;
				esc = 0;
				start = i + 1;
			}
		} else if (c == '"' && !esc) {
			ref_string(r, t + start, i - start, min, 1);
			in = 0;
		} else {
			esc = c == '\\' ? !esc : 0;
		}
	}
	if (in) {
		r->open = 1;
		r->open_start = start;
		r->open_len = n - start;
		r->settled = r->len;
		r->open_data = ref_data(t + start, n - start);
		ref_string(r, t + start, n - start, min, 0);
	}
}

/* ---------------------------------------------------------------- the elider */

/* Deterministic pieces: a 64-bit hash of the input seeds an xorshift generator. */
static uint64_t hash_input(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325u;
	size_t i;
	for (i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3u;
	}
	return h;
}

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Feeds t[k..k+n) from a buffer of exactly n bytes. */
static void feed(vidu_elide *el, vidu_buf *out, const unsigned char *t, size_t k, size_t n)
{
	unsigned char *piece = fuzz_copy(t + k, n);
	CHECK(vidu_elide_feed(el, out, (const char *)piece, n) == 0);
	free(piece);
}

/* After t[0..k) was fed into out (past pre bytes of its own): out must hold the reference's
 * output for t[0..k), with at most the content so far of a string still open, none of it
 * changed, and at most min bytes of it when it is a data: URI. */
static void check_partial(const vidu_buf *out, size_t pre, const unsigned char *t, size_t k,
	size_t min, struct ref *r)
{
	size_t got = out->len - pre, held;
	ref_elide(t, k, min, r);
	if (!r->open) {
		CHECK(got == r->len && (got == 0 || memcmp(out->data + pre, r->p, got) == 0));
		return;
	}
	CHECK(got >= r->settled);
	CHECK(r->settled == 0 || memcmp(out->data + pre, r->p, r->settled) == 0);
	held = got - r->settled;
	CHECK(held <= r->open_len);
	CHECK(!r->open_data || held <= min);
	CHECK(held == 0 || memcmp(out->data + pre + r->settled, t + r->open_start, held) == 0);
}

/* ---------------------------------------------------------------- the target */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char prefix[8] = { 'x', '"', '\\', '{', '"', 'd', 'a', ':' };
	unsigned v = size >= 2 ? (unsigned)data[0] | (unsigned)data[1] << 8 : 0;
	unsigned w = v & 0x7fff;
	int expand = (v & 0x8000) == 0;
	size_t min, n, i, k, pre, quotes = 0;
	const uint8_t *raw = data + (size >= 2 ? 2 : size);
	size_t nraw = size - (size_t)(raw - data);
	unsigned char *t;
	uint64_t rng;
	vidu_elide whole, part, bytes;
	vidu_buf out_whole, out_part, out_bytes;
	struct ref r;

	if (w % 16 == 0)
		min = (w >> 4) % VIDU_ELIDE_MIN;
	else if (w % 16 == 1)
		min = (size_t)-1 - (w >> 4) % 3;
	else if (w % 16 < 10)
		min = VIDU_ELIDE_MIN + (w >> 4) % 8;
	else
		min = VIDU_ELIDE_MIN + (w >> 4) % 512;

	/* The text, with the '*' expansion when asked for. */
	if (!expand) {
		t = fuzz_copy(raw, nraw);
		n = nraw;
	} else {
		unsigned char *x = fuzz_alloc(EXPAND_MAX + nraw);
		n = 0;
		for (i = 0; i < nraw; i++) {
			if (raw[i] == '*' && n > 0 && n + 63 <= EXPAND_MAX) {
				memset(x + n, x[n - 1], 63);
				n += 63;
			} else {
				x[n++] = raw[i];
			}
		}
		t = fuzz_copy(x, n);
		free(x);
	}
	for (i = 0; i < n; i++)
		quotes += t[i] == '"';
	rng = hash_input(data, size) | 1;

	r.cap = n + 64;
	r.p = fuzz_alloc(r.cap);

	/* Whole. */
	vidu_buf_init(&out_whole);
	vidu_elide_init(&whole, min);
	feed(&whole, &out_whole, t, 0, n);
	CHECK(vidu_elide_end(&whole, &out_whole) == 0);

	/* In drawn pieces, after bytes that are not the elider's. */
	vidu_buf_init(&out_part);
	pre = (size_t)(next_rand(&rng) % (sizeof prefix + 1));
	CHECK(vidu_buf_append(&out_part, prefix, pre) == 0);
	vidu_elide_init(&part, min);
	for (k = 0; k < n;) {
		uint64_t x = next_rand(&rng);
		size_t left = n - k, len;
		switch (x % 4) {
		case 0: len = 0; break;
		case 1: len = 1; break;
		case 2: len = (size_t)(x >> 2) % 8; break;
		default: len = (size_t)(x >> 2) % (left + 1); break;
		}
		if (len > left)
			len = left;
		feed(&part, &out_part, t, k, len);
		k += len;
		check_partial(&out_part, pre, t, k, min, &r);
	}
	feed(&part, &out_part, t, n, 0);
	CHECK(vidu_elide_end(&part, &out_part) == 0);
	CHECK(pre == 0 || memcmp(out_part.data, prefix, pre) == 0);

	/* A byte at a time. */
	vidu_buf_init(&out_bytes);
	vidu_elide_init(&bytes, min);
	for (k = 0; k < n; k++) {
		if (next_rand(&rng) % 8 == 0)
			feed(&bytes, &out_bytes, t, k, 0);
		feed(&bytes, &out_bytes, t, k, 1);
	}
	CHECK(vidu_elide_end(&bytes, &out_bytes) == 0);

	/* All the same, and the same as the reference. */
	ref_elide(t, n, min, &r);
	CHECK(out_whole.len == r.len && (r.len == 0 || memcmp(out_whole.data, r.p, r.len) == 0));
	CHECK(whole.count == r.count);
	CHECK(out_part.len - pre == r.len && (r.len == 0 || memcmp(out_part.data + pre, r.p, r.len) == 0));
	CHECK(part.count == r.count);
	CHECK(out_bytes.len == r.len && (r.len == 0 || memcmp(out_bytes.data, r.p, r.len) == 0));
	CHECK(bytes.count == r.count);

	/* Bounds, and the pass-through. */
	CHECK(out_whole.len <= n);
	CHECK(whole.count <= quotes);
	for (i = 0; i < n && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'); i++)
		;
	if (min < VIDU_ELIDE_MIN || i == n || (t[i] != '{' && t[i] != '['))
		CHECK(out_whole.len == n && whole.count == 0 && (n == 0 || memcmp(out_whole.data, t, n) == 0));

	vidu_buf_free(&out_bytes);
	vidu_buf_free(&out_part);
	vidu_buf_free(&out_whole);
	free(r.p);
	free(t);
	return 0;
}
