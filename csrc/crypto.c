/*
 * crypto.c: what verifying a provider's webhook takes, on OpenSSL's libcrypto (EVP API):
 * SHA-256, HMAC-SHA256, Ed25519 verification, a constant-time comparison, hex, and base64url
 * (RFC 4648 section 5) on top of b64.c's strict codec.
 *
 * The first half is plain C (declared in crypto.h). The second half is the Lua binding.
 * Output is built on the C stack or in a GC-owned userdata and then copied into a Lua string;
 * every OpenSSL object is freed before any Lua call that can raise, so nothing leaks on an
 * error. Runtime failures (bad input from the world, OpenSSL failing) return nil, message;
 * wrong argument types raise.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#if OPENSSL_VERSION_NUMBER < 0x30000000L
#include <openssl/hmac.h>
#endif

#include "b64.h"
#include "core.h"
#include "crypto.h"

/* ---------------------------------------------------------------------------------------- */
/* Plain C. */

int vidu_sha256(const unsigned char *data, size_t n, unsigned char out[VIDU_SHA256_LEN])
{
	unsigned int len = 0;
	static const unsigned char empty[1] = { 0 };
	if (EVP_Digest(n > 0 ? data : empty, n, out, &len, EVP_sha256(), NULL) != 1
			|| len != VIDU_SHA256_LEN) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

int vidu_hmac_sha256(const unsigned char *key, size_t keylen, const unsigned char *data,
		size_t n, unsigned char out[VIDU_SHA256_LEN])
{
	/* HMAC pads a short key with zero bytes to the block size, so an empty key is the same
	 * key as one zero byte; OpenSSL's MAC API refuses a key of length 0. */
	static const unsigned char zero[1] = { 0 };
	size_t len = 0;
	if (keylen == 0) {
		key = zero;
		keylen = 1;
	}
	if (n == 0)
		data = zero;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen, data, n, out,
			VIDU_SHA256_LEN, &len) == NULL || len != VIDU_SHA256_LEN) {
		ERR_clear_error();
		return -1;
	}
#else
	{
		unsigned int ulen = 0;
		if (keylen > (size_t)0x7fffffff || HMAC(EVP_sha256(), key, (int)keylen, data, n, out,
				&ulen) == NULL) {
			ERR_clear_error();
			return -1;
		}
		len = ulen;
	}
	if (len != VIDU_SHA256_LEN)
		return -1;
#endif
	return 0;
}

int vidu_ed25519_verify(const unsigned char pub[VIDU_ED25519_KEY_LEN],
		const unsigned char sig[VIDU_ED25519_SIG_LEN], const unsigned char *msg, size_t n)
{
	static const unsigned char empty[1] = { 0 };
	EVP_PKEY *pkey;
	EVP_MD_CTX *ctx;
	int rc, result;

	pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, VIDU_ED25519_KEY_LEN);
	if (pkey == NULL) {
		/* OpenSSL refuses key bytes it cannot use: that key verifies nothing. */
		ERR_clear_error();
		return 0;
	}
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL) {
		EVP_PKEY_free(pkey);
		ERR_clear_error();
		return -1;
	}
	if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) != 1) {
		result = -1;
	} else {
		/* Ed25519 is one-shot: the whole message at once, no prehash. */
		rc = EVP_DigestVerify(ctx, sig, VIDU_ED25519_SIG_LEN, n > 0 ? msg : empty, n);
		result = rc == 1 ? 1 : (rc == 0 ? 0 : -1);
		/* A malformed signature (s out of range, R not a point) is an invalid one. */
		if (result == -1)
			result = 0;
	}
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	ERR_clear_error();
	return result;
}

int vidu_ct_equal(const void *a, const void *b, size_t n)
{
	if (n == 0)
		return 1;
	return CRYPTO_memcmp(a, b, n) == 0;
}

void vidu_hex_encode(const unsigned char *src, size_t n, char *dst)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;
	for (i = 0; i < n; i++) {
		dst[2 * i] = digits[src[i] >> 4];
		dst[2 * i + 1] = digits[src[i] & 15];
	}
}

/* The value of one hex digit, or -1. */
static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int vidu_hex_decode(const char *src, size_t n, unsigned char *dst, size_t *errpos)
{
	size_t i;
	for (i = 0; i + 1 < n; i += 2) {
		int hi = hex_value((unsigned char)src[i]);
		int lo = hex_value((unsigned char)src[i + 1]);
		if (hi < 0 || lo < 0) {
			*errpos = hi < 0 ? i : i + 1;
			return -1;
		}
		dst[i / 2] = (unsigned char)(hi << 4 | lo);
	}
	if (n % 2 != 0) {
		/* A bad last character is the better report than the odd length. */
		*errpos = hex_value((unsigned char)src[n - 1]) < 0 ? n - 1 : n;
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Lua binding. */

/* Outputs up to this size are built on the C stack instead of in a userdata. */
#define CRYPTO_STACK_BUF 512

/* A scratch buffer of n bytes: the stack one when it fits, else a new userdata that the GC
 * owns (pushed on the stack, so raising later leaks nothing). */
static char *scratch(lua_State *L, char *stackbuf, size_t n)
{
	if (n <= CRYPTO_STACK_BUF)
		return stackbuf;
	return (char *)lua_newuserdata(L, n);
}

/* Pushes nil and "<what>: OpenSSL failed"; returns 2. */
static int push_openssl_error(lua_State *L, const char *what)
{
	lua_pushnil(L);
	lua_pushfstring(L, "%s: OpenSSL failed", what);
	return 2;
}

/* Pushes nil and "invalid <what> at byte N: unexpected ..." for the byte at pos of s; returns 2. */
static int push_bad_char(lua_State *L, const char *what, const char *s, size_t pos)
{
	char num[32], hex[3];
	unsigned char c = (unsigned char)s[pos];
	snprintf(num, sizeof num, "%lu", (unsigned long)pos + 1);
	lua_pushnil(L);
	if (c > 0x20 && c < 0x7f) {
		lua_pushfstring(L, "invalid %s at byte %s: unexpected character '%c'", what, num, (int)c);
	} else {
		/* lua_pushfstring has no %x. */
		vidu_hex_encode(&c, 1, hex);
		hex[2] = '\0';
		lua_pushfstring(L, "invalid %s at byte %s: unexpected byte 0x%s", what, num, hex);
	}
	return 2;
}

/* core.sha256(s) -> the 32-byte SHA-256 digest of s | nil, err. */
static int l_sha256(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	unsigned char out[VIDU_SHA256_LEN];
	if (vidu_sha256((const unsigned char *)s, n, out) != 0)
		return push_openssl_error(L, "sha256");
	lua_pushlstring(L, (const char *)out, sizeof out);
	return 1;
}

/* core.hmac_sha256(key, s) -> the 32-byte HMAC-SHA256 of s under key | nil, err. */
static int l_hmac_sha256(lua_State *L)
{
	size_t keylen, n;
	const char *key = luaL_checklstring(L, 1, &keylen);
	const char *s = luaL_checklstring(L, 2, &n);
	unsigned char out[VIDU_SHA256_LEN];
	if (vidu_hmac_sha256((const unsigned char *)key, keylen, (const unsigned char *)s, n,
			out) != 0)
		return push_openssl_error(L, "hmac_sha256");
	lua_pushlstring(L, (const char *)out, sizeof out);
	return 1;
}

/* core.ed25519_verify(public_key, message, signature) -> true | false | nil, err. The key is
 * the raw 32 bytes (a JWK's decoded "x"), the signature the raw 64 bytes. A key or signature
 * of another length is nil, err: it comes from the world, so it is not raised. */
static int l_ed25519_verify(lua_State *L)
{
	size_t publen, n, siglen;
	const char *pub = luaL_checklstring(L, 1, &publen);
	const char *msg = luaL_checklstring(L, 2, &n);
	const char *sig = luaL_checklstring(L, 3, &siglen);
	int rc;
	if (publen != VIDU_ED25519_KEY_LEN) {
		lua_pushnil(L);
		lua_pushfstring(L, "ed25519_verify: public key must be %d bytes, got %d",
				VIDU_ED25519_KEY_LEN, (int)(publen > 0x7fffffff ? 0x7fffffff : publen));
		return 2;
	}
	if (siglen != VIDU_ED25519_SIG_LEN) {
		lua_pushnil(L);
		lua_pushfstring(L, "ed25519_verify: signature must be %d bytes, got %d",
				VIDU_ED25519_SIG_LEN, (int)(siglen > 0x7fffffff ? 0x7fffffff : siglen));
		return 2;
	}
	rc = vidu_ed25519_verify((const unsigned char *)pub, (const unsigned char *)sig,
			(const unsigned char *)msg, n);
	if (rc < 0)
		return push_openssl_error(L, "ed25519_verify");
	lua_pushboolean(L, rc);
	return 1;
}

/* core.secure_equal(a, b) -> whether the strings are equal, in time that depends only on
 * their lengths (strings of different lengths are unequal at once: lengths are not secret). */
static int l_secure_equal(lua_State *L)
{
	size_t na, nb;
	const char *a = luaL_checklstring(L, 1, &na);
	const char *b = luaL_checklstring(L, 2, &nb);
	lua_pushboolean(L, na == nb && vidu_ct_equal(a, b, na));
	return 1;
}

/* core.hexencode(s) -> lower-case hex of s. */
static int l_hexencode(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	char stackbuf[CRYPTO_STACK_BUF], *out;
	if (n > ((size_t)-1) / 2)
		return luaL_error(L, "hexencode: input too large");
	out = scratch(L, stackbuf, 2 * n);
	vidu_hex_encode((const unsigned char *)s, n, out);
	lua_pushlstring(L, out, 2 * n);
	return 1;
}

/* core.hexdecode(s) -> bytes | nil, "invalid hex at byte N: ..." (either case; no spaces). */
static int l_hexdecode(lua_State *L)
{
	size_t n, pos = 0;
	const char *s = luaL_checklstring(L, 1, &n);
	char stackbuf[CRYPTO_STACK_BUF], *out;
	out = scratch(L, stackbuf, n / 2);
	if (vidu_hex_decode(s, n, (unsigned char *)out, &pos) != 0) {
		if (pos >= n) {
			lua_pushnil(L);
			lua_pushfstring(L, "invalid hex: odd length %d", (int)(n > 0x7fffffff
					? 0x7fffffff : n));
			return 2;
		}
		return push_bad_char(L, "hex", s, pos);
	}
	lua_pushlstring(L, out, n / 2);
	return 1;
}

/* core.b64urlencode(s) -> base64url text of s (RFC 4648 section 5, no padding, as JWKs and
 * JWTs write it). */
static int l_b64urlencode(lua_State *L)
{
	size_t n, m, i;
	const char *s = luaL_checklstring(L, 1, &n);
	char stackbuf[CRYPTO_STACK_BUF], *out;
	m = vidu_b64_encoded_len(n);
	if (n > 0 && m == 0)
		return luaL_error(L, "b64urlencode: input too large");
	out = scratch(L, stackbuf, m);
	vidu_b64_encode((const unsigned char *)s, n, out);
	while (m > 0 && out[m - 1] == '=')
		m--;
	for (i = 0; i < m; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	lua_pushlstring(L, out, m);
	return 1;
}

/* core.b64urldecode(s) -> bytes | nil, "invalid base64url ...". The URL-safe alphabet ('-'
 * and '_'; '+' and '/' are refused); padding optional, but if present it must be right. As
 * strict as core.b64decode otherwise (unused bits must be zero, no whitespace). */
static int l_b64urldecode(lua_State *L)
{
	size_t n, m, i, len = 0, pos = 0;
	const char *s = luaL_checklstring(L, 1, &n);
	char stackbuf[CRYPTO_STACK_BUF], outbuf[CRYPTO_STACK_BUF], *std, *out;
	int st;
	if (n % 4 == 1) {
		lua_pushnil(L);
		lua_pushfstring(L, "invalid base64url: length %d is not possible", (int)(n > 0x7fffffff
				? 0x7fffffff : n));
		return 2;
	}
	if (n > ((size_t)-1) - 4)
		return luaL_error(L, "b64urldecode: input too large");
	/* The standard alphabet, padded: then b64.c decodes it, with its strict checks. */
	m = n + (4 - n % 4) % 4;
	std = scratch(L, stackbuf, m);
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (c == '+' || c == '/')
			return push_bad_char(L, "base64url", s, i);
		std[i] = c == '-' ? '+' : (c == '_' ? '/' : c);
	}
	for (; i < m; i++)
		std[i] = '=';
	out = scratch(L, outbuf, vidu_b64_decoded_len(std, m));
	st = vidu_b64_decode(std, m, (unsigned char *)out, &len, &pos);
	if (st != VIDU_B64_OK) {
		if (st == VIDU_B64_BAD_CHAR && pos < n)
			return push_bad_char(L, "base64url", s, pos);
		lua_pushnil(L);
		lua_pushfstring(L, "invalid base64url at byte %d: %s", (int)(pos < n ? pos + 1 : n),
				vidu_b64_strerror(st));
		return 2;
	}
	lua_pushlstring(L, out, len);
	return 1;
}

static const luaL_Reg crypto_funcs[] = {
	{ "sha256", l_sha256 },
	{ "hmac_sha256", l_hmac_sha256 },
	{ "ed25519_verify", l_ed25519_verify },
	{ "secure_equal", l_secure_equal },
	{ "hexencode", l_hexencode },
	{ "hexdecode", l_hexdecode },
	{ "b64urlencode", l_b64urlencode },
	{ "b64urldecode", l_b64urldecode },
	{ NULL, NULL }
};

/* Adds the crypto functions to the module table at the top of the stack. */
void vidu_open_crypto(lua_State *L)
{
	luaL_setfuncs(L, crypto_funcs, 0);
}
