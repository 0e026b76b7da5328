/*
 * b64.h: RFC 4648 base64 (standard alphabet, padded) over plain buffers, with no Lua in it,
 * so any C code of the core can reuse it. b64.c adds the Lua functions on top.
 *
 * Encoding and decoding run at memory speed: AVX2 where the CPU has it (chosen at run time),
 * else a portable scalar path that gives byte-identical results. Decoding is strict: the
 * length must be a multiple of 4, padding is required and only at the end, no whitespace,
 * and the unused bits before padding must be zero, so each byte string has one encoding.
 */
#ifndef VIDU_B64_H
#define VIDU_B64_H

#include <stddef.h>

/* Decoder results: VIDU_B64_OK or the reason the input is not strict base64. */
enum vidu_b64_status {
	VIDU_B64_OK = 0,
	VIDU_B64_BAD_CHAR,      /* a byte outside the alphabet */
	VIDU_B64_BAD_PAD,       /* '=' where no padding can be */
	VIDU_B64_PAD_EXPECTED,  /* a character after '=' in the final group */
	VIDU_B64_NONZERO_BITS,  /* the last character before padding has unused bits set */
	VIDU_B64_TRUNCATED      /* the length is not a multiple of 4 */
};

/* Implementations, for vidu_b64_encode_with / vidu_b64_decode_with. */
enum vidu_b64_impl {
	VIDU_B64_AUTO = 0,      /* the fastest one this CPU supports */
	VIDU_B64_SCALAR,        /* portable C, always available */
	VIDU_B64_AVX2           /* x86-64 AVX2; only if vidu_b64_supported(VIDU_B64_AVX2) */
};

/* Number of characters the encoding of n bytes has: 4 * ceil(n / 3).
 * Returns 0 for n > 0 when the result would not fit in a size_t. */
size_t vidu_b64_encoded_len(size_t n);

/* Encodes src[0..n) into dst, which must hold vidu_b64_encoded_len(n) chars (no NUL added).
 * The buffers must not overlap. */
void vidu_b64_encode(const unsigned char *src, size_t n, char *dst);

/* Number of bytes that decoding src[0..n) yields if it is valid: 3 per group of 4 characters
 * minus the trailing '=' characters. For invalid input it is still an upper bound of what
 * vidu_b64_decode writes, so it is always a safe size for dst. */
size_t vidu_b64_decoded_len(const char *src, size_t n);

/* Decodes src[0..n) into dst (vidu_b64_decoded_len(src, n) bytes). On success returns
 * VIDU_B64_OK and sets *outlen. Otherwise returns the reason and sets *errpos to the 0-based
 * offset of the offending byte (n for VIDU_B64_TRUNCATED); dst then holds garbage. */
int vidu_b64_decode(const char *src, size_t n, unsigned char *dst, size_t *outlen,
		size_t *errpos);

/* A short English phrase for a decoder status, e.g. "misplaced padding '='". */
const char *vidu_b64_strerror(int status);

/* Whether an implementation can run on this CPU (VIDU_B64_AUTO and _SCALAR always can). */
int vidu_b64_supported(int impl);

/* Name of an implementation ("scalar", "avx2"); VIDU_B64_AUTO names the one it picks. */
const char *vidu_b64_impl_name(int impl);

/* The parts of a base64 data: URI (RFC 2397), pointing into the URI (nothing copied). */
struct vidu_data_uri {
	const char *mime;       /* the media type, between "data:" and ";base64" */
	size_t mime_len;        /* 0: none given, which RFC 2397 reads as text/plain;charset=US-ASCII */
	const char *payload;    /* the base64 text after the first ',' (not checked here) */
	size_t payload_len;
};

/* Splits uri[0..n) as "data:[<mime>];base64,<payload>" ("data:" and ";base64" in any case;
 * the first ',' ends the header). Returns NULL and fills *out, or a static message saying
 * why it is not such a URI. Decoding the payload (vidu_b64_decode) is the caller's part. */
const char *vidu_data_uri_split(const char *uri, size_t n, struct vidu_data_uri *out);

/* The same as vidu_b64_encode/_decode with a chosen implementation (tests, benchmarks).
 * An implementation the CPU lacks falls back to the scalar one. */
void vidu_b64_encode_with(int impl, const unsigned char *src, size_t n, char *dst);
int vidu_b64_decode_with(int impl, const char *src, size_t n, unsigned char *dst,
		size_t *outlen, size_t *errpos);

#endif
