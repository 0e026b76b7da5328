/*
 * fuzz_data_uri.c: data: URI parsing (vidu_data_uri_split in csrc/b64.c, which
 * core.parse_data_uri runs) and the decode of its payload.
 *
 * The input is read twice. As a URI: when it splits, the parts lie inside it in order
 * ("data:" mime ";base64," payload, prefixes in any case, no ',' in the mime) and their
 * lengths add up; when it does not, the reason is the one its first bytes call for; and the
 * payload decodes the same with every implementation. As material: a mime (its first bytes,
 * up to a length the first byte picks, commas dropped) and bytes (the rest) are built into a
 * URI with the encoder, which must split back into that mime and decode back to those bytes.
 */
#include <ctype.h>

#include "fuzz.h"
#include "b64.h"

static int ieq(const unsigned char *a, const char *b, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++)
		if (tolower(a[i]) != b[i])
			return 0;
	return 1;
}

/* Decodes with every implementation the CPU has; they must agree. Returns the status. */
static int decode_all(const char *s, size_t n, unsigned char **out, size_t *len)
{
	static const int impls[] = { VIDU_B64_SCALAR, VIDU_B64_AVX2 };
	size_t cap = vidu_b64_decoded_len(s, n), k, first_len = 0, first_pos = 0;
	int first = -1;
	*out = NULL;
	for (k = 0; k < 2; k++) {
		unsigned char *buf;
		size_t l = 0, pos = 0;
		int st;
		if (!vidu_b64_supported(impls[k]))
			continue;
		buf = fuzz_alloc(cap);
		st = vidu_b64_decode_with(impls[k], s, n, buf, &l, &pos);
		if (first < 0) {
			first = st;
			first_len = l;
			first_pos = pos;
			*out = buf;
			*len = l;
			continue;
		}
		CHECK(st == first);
		if (st == VIDU_B64_OK)
			CHECK(l == first_len && (l == 0 || memcmp(buf, *out, l) == 0));
		else
			CHECK(pos == first_pos);
		free(buf);
	}
	return first;
}

/* The input as a URI. */
static void check_split(const unsigned char *u, size_t n)
{
	struct vidu_data_uri parts;
	const char *why = vidu_data_uri_split((const char *)u, n, &parts);
	const unsigned char *comma = n > 5 ? (const unsigned char *)memchr(u + 5, ',', n - 5) : NULL;
	unsigned char *out;
	size_t len = 0;

	if (n < 5 || !ieq(u, "data:", 5)) {
		CHECK(why != NULL && strcmp(why, "not a data: URI") == 0);
		return;
	}
	if (comma == NULL) {
		CHECK(why != NULL && strstr(why, "no ','") != NULL);
		return;
	}
	if ((size_t)(comma - u) < 12 || !ieq(comma - 7, ";base64", 7)) {
		CHECK(why != NULL && strstr(why, "not base64") != NULL);
		return;
	}
	CHECK(why == NULL);
	CHECK((const unsigned char *)parts.mime == u + 5);
	CHECK((const unsigned char *)parts.payload == comma + 1);
	CHECK(5 + parts.mime_len + 8 + parts.payload_len == n);
	CHECK(parts.mime_len == 0 || memchr(parts.mime, ',', parts.mime_len) == NULL);
	if (decode_all(parts.payload, parts.payload_len, &out, &len) == VIDU_B64_OK)
		CHECK(len == vidu_b64_decoded_len(parts.payload, parts.payload_len));
	free(out);
}

/* The input as the material of a URI. */
static void check_build(const unsigned char *p, size_t n)
{
	size_t want = n > 0 ? p[0] % 40 : 0, mime_len = 0, i, enc, total, len = 0;
	const unsigned char *bytes;
	size_t nbytes;
	char *mime = (char *)fuzz_alloc(want + 1), *uri;
	struct vidu_data_uri parts;
	unsigned char *out;

	for (i = 1; i < n && i <= want; i++)
		if (p[i] != ',')
			mime[mime_len++] = (char)p[i];
	bytes = p + (i < n ? i : n);
	nbytes = n - (size_t)(bytes - p);
	enc = vidu_b64_encoded_len(nbytes);
	total = 5 + mime_len + 8 + enc;
	uri = (char *)fuzz_alloc(total);
	memcpy(uri, "data:", 5);
	if (mime_len > 0)
		memcpy(uri + 5, mime, mime_len);
	memcpy(uri + 5 + mime_len, ";base64,", 8);
	vidu_b64_encode(bytes, nbytes, uri + 13 + mime_len);

	CHECK(vidu_data_uri_split(uri, total, &parts) == NULL);
	CHECK(parts.mime_len == mime_len && (mime_len == 0 || memcmp(parts.mime, mime, mime_len) == 0));
	CHECK(parts.payload_len == enc);
	CHECK(decode_all(parts.payload, parts.payload_len, &out, &len) == VIDU_B64_OK);
	CHECK(len == nbytes && (len == 0 || memcmp(out, bytes, len) == 0));
	free(out);
	free(uri);
	free(mime);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *u = fuzz_copy(data, size);
	check_split(u, size);
	check_build(u, size);
	free(u);
	return 0;
}
