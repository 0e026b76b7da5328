/*
 * crypto.h: the primitives webhook verification needs, over OpenSSL's libcrypto (EVP), with no
 * Lua in them: SHA-256, HMAC-SHA256, Ed25519 verification, a constant-time comparison, and
 * hex. crypto.c adds the Lua functions on top (and base64url, on the codec of b64.h).
 *
 * Every function reports failure by its return value and frees what it took before
 * returning, so a Lua binding never raises while OpenSSL owns memory for it.
 */
#ifndef VIDU_CRYPTO_H
#define VIDU_CRYPTO_H

#include <stddef.h>

#define VIDU_SHA256_LEN 32
#define VIDU_ED25519_KEY_LEN 32
#define VIDU_ED25519_SIG_LEN 64

/* SHA-256 of data[0..n) into out (32 bytes). Returns 0, or -1 when OpenSSL fails. */
int vidu_sha256(const unsigned char *data, size_t n, unsigned char out[VIDU_SHA256_LEN]);

/* HMAC-SHA256 (RFC 2104) of data[0..n) under key[0..keylen) into out (32 bytes); any key
 * length, empty included. Returns 0, or -1 when OpenSSL fails. */
int vidu_hmac_sha256(const unsigned char *key, size_t keylen, const unsigned char *data,
		size_t n, unsigned char out[VIDU_SHA256_LEN]);

/* Ed25519 (RFC 8032, pure) verification of sig over msg[0..n) with a raw 32-byte public key.
 * Returns 1 when the signature is valid, 0 when it is not (a key that is not a valid curve
 * point counts as not valid), -1 when OpenSSL fails for another reason (out of memory). */
int vidu_ed25519_verify(const unsigned char pub[VIDU_ED25519_KEY_LEN],
		const unsigned char sig[VIDU_ED25519_SIG_LEN], const unsigned char *msg, size_t n);

/* 1 when a[0..n) and b[0..n) are equal, else 0, in time that depends on n only. */
int vidu_ct_equal(const void *a, const void *b, size_t n);

/* Lower-case hex of src[0..n) into dst (2n chars, no NUL). */
void vidu_hex_encode(const unsigned char *src, size_t n, char *dst);

/* Decodes hex (either case) src[0..n) into dst (n/2 bytes). Returns 0, or -1 with *errpos set
 * to the 0-based offset of the first non-hex character (n when n is odd). */
int vidu_hex_decode(const char *src, size_t n, unsigned char *dst, size_t *errpos);

#endif
