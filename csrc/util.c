/*
 * util.c: small helpers of vidu.core that the Lua layer needs and plain Lua lacks:
 * a monotonic clock (core.now), a strict UTF-8 validator/counter (core.utf8_len) and the
 * download-target check (core.is_regular_or_absent); and the plain-C helpers of util.h that
 * b64.c, image.c and engine.c share. The Lua half is left out with -DVIDU_UTIL_NO_LUA (the
 * fuzz targets in fuzz/ build the plain C half alone).
 */
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#ifndef VIDU_UTIL_NO_LUA
#include "core.h"
#endif
#include "buf.h"
#include "util.h"

/* Regular-file check and size for the *_file functions (see util.h). */
const char *vidu_file_size(const char *path, size_t *size)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return strerror(errno);
	if (!S_ISREG(st.st_mode))
		return "not a regular file";
	*size = (uintmax_t)st.st_size > SIZE_MAX ? SIZE_MAX : (size_t)st.st_size;
	return NULL;
}

/* Reads up to want bytes (fewer only at end of file or on error). */
size_t vidu_read_full(FILE *f, unsigned char *buf, size_t want)
{
	size_t got = 0;
	while (got < want) {
		size_t r = fread(buf + got, 1, want - got, f);
		if (r == 0)
			break;
		got += r;
	}
	return got;
}

/* Download-target check (see util.h). */
const char *vidu_output_target(const char *path, int *err)
{
	struct stat st;
	*err = 0;
	if (stat(path, &st) != 0) {
		if (errno != ENOENT)
			*err = errno;
		return NULL;
	}
	if (S_ISREG(st.st_mode))
		return NULL;
	if (S_ISDIR(st.st_mode))
		return "is a directory";
	if (S_ISFIFO(st.st_mode))
		return "is a FIFO";
	if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
		return "is a device";
	if (S_ISSOCK(st.st_mode))
		return "is a socket";
	return "is not a regular file";
}

/*
 * Counts the UTF-8 characters of p[0..n). Returns the count, or -1 with *bad set to the
 * 0-based offset of the first byte that does not start a valid sequence: a stray
 * continuation byte, a lead byte whose sequence is truncated or has a bad continuation,
 * an overlong form, a UTF-16 surrogate (U+D800..U+DFFF) or a value above U+10FFFF.
 * The ranges are those of RFC 3629's ABNF, so each rule is checked on the second byte.
 */
long vidu_utf8_count(const unsigned char *p, size_t n, size_t *bad)
{
	size_t i = 0;
	long count = 0;
	while (i < n) {
		unsigned c = p[i];
		size_t len;
		unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
		if (c < 0x80) {
			i++;
			count++;
			continue;
		} else if (c >= 0xC2 && c <= 0xDF) {
			len = 2;
		} else if (c >= 0xE0 && c <= 0xEF) {
			len = 3;
			if (c == 0xE0)
				lo = 0xA0; /* below is overlong */
			else if (c == 0xED)
				hi = 0x9F; /* above is a surrogate */
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4;
			if (c == 0xF0)
				lo = 0x90; /* below is overlong */
			else if (c == 0xF4)
				hi = 0x8F; /* above is > U+10FFFF */
		} else {
			/* 0x80..0xC1 (continuation or overlong 2-byte lead) and 0xF5..0xFF */
			*bad = i;
			return -1;
		}
		if (n - i < len || p[i + 1] < lo || p[i + 1] > hi) {
			*bad = i;
			return -1;
		}
		if (len >= 3 && (p[i + 2] & 0xC0) != 0x80) {
			*bad = i;
			return -1;
		}
		if (len == 4 && (p[i + 3] & 0xC0) != 0x80) {
			*bad = i;
			return -1;
		}
		i += len;
		count++;
	}
	return count;
}

int vidu_ascii_ieq(const char *a, const char *b, size_t n)
{
	size_t i;
	for (i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y + 32);
		if (x != y)
			return 0;
	}
	return 1;
}

/* True when p[0..5) is "data:" in any case (URI schemes are case-insensitive). */
static int is_data_scheme(const char *p)
{
	return vidu_ascii_ieq(p, "data:", 5);
}

enum { ELIDE_START, ELIDE_OUT, ELIDE_IN, ELIDE_PASS };

void vidu_elide_init(vidu_elide *el, size_t min)
{
	memset(el, 0, sizeof *el);
	el->min = min;
	el->mode = min >= VIDU_ELIDE_MIN ? ELIDE_START : ELIDE_PASS;
}

/* The length of the run of backslashes that ends p[0..n). */
static size_t backslash_run(const char *p, size_t n)
{
	size_t k = n;
	while (k > 0 && p[k - 1] == '\\')
		k--;
	return n - k;
}

/* Adds the content bytes p[0..n) of the open string: all of them while the string may stay
 * (shorter than min, or not a data: URI), none past min bytes of a data: URI (it is cut at
 * its end). Returns 0 or -1 (out of memory). */
static int elide_content(vidu_elide *el, vidu_buf *out, const char *p, size_t n)
{
	size_t keep = n, run;
	if (el->len < 5) {
		size_t h = n < 5 - el->len ? n : 5 - el->len;
		memcpy(el->head + el->len, p, h);
	}
	if (el->len + n >= 5 && is_data_scheme(el->head))
		keep = el->len >= el->min ? 0 : (n < el->min - el->len ? n : el->min - el->len);
	el->len += n;
	run = backslash_run(p, n);
	el->odd = (run == n ? el->odd + run : run) % 2;
	return vidu_buf_append(out, p, keep);
}

/* Ends the open string: its kept bytes become the note when it is a long data: URI. */
static int elide_close(vidu_elide *el, vidu_buf *out, int quote)
{
	if (el->len > el->min && is_data_scheme(el->head)) {
		char note[64];
		int k = snprintf(note, sizeof note, "data:... (%zu bytes, not kept)%s", el->len,
			quote ? "\"" : "");
		out->len = el->start + 1;
		el->count++;
		return vidu_buf_append(out, note, (size_t)k);
	}
	return quote ? vidu_buf_append(out, "\"", 1) : 0;
}

int vidu_elide_feed(vidu_elide *el, vidu_buf *out, const char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		if (el->mode == ELIDE_PASS)
			return vidu_buf_append(out, p + i, n - i);
		if (el->mode == ELIDE_START) {
			char c = p[i];
			if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
				if (vidu_buf_append(out, p + i, 1) != 0)
					return -1;
				i++;
			} else {
				el->mode = c == '{' || c == '[' ? ELIDE_OUT : ELIDE_PASS;
			}
		} else if (el->mode == ELIDE_OUT) {
			const char *q = memchr(p + i, '"', n - i);
			size_t end = q != NULL ? (size_t)(q - p) + 1 : n;
			if (vidu_buf_append(out, p + i, end - i) != 0)
				return -1;
			i = end;
			if (q != NULL) {
				el->mode = ELIDE_IN;
				el->start = out->len - 1;
				el->len = 0;
				el->odd = 0;
			}
		} else {
			/* In a string: the first quote not escaped (an even run of backslashes before
			 * it, counting those that ended the previous chunk) closes it. */
			size_t j = i, q;
			for (;;) {
				const char *c = memchr(p + j, '"', n - j);
				size_t run;
				if (c == NULL)
					return elide_content(el, out, p + i, n - i);
				q = (size_t)(c - p);
				run = backslash_run(p + i, q - i);
				if ((run == q - i ? el->odd + run : run) % 2 == 0)
					break;
				j = q + 1;
			}
			if (elide_content(el, out, p + i, q - i) != 0 || elide_close(el, out, 1) != 0)
				return -1;
			el->mode = ELIDE_OUT;
			i = q + 1;
		}
	}
	return 0;
}

int vidu_elide_end(vidu_elide *el, vidu_buf *out)
{
	int rc = el->mode == ELIDE_IN ? elide_close(el, out, 0) : 0;
	el->mode = ELIDE_PASS;
	return rc;
}

#ifndef VIDU_UTIL_NO_LUA

/* ---------------------------------------------------------------------------------------- */
/* Lua binding. */

/* core.now() -> seconds on CLOCK_MONOTONIC as a float (never jumps with the wall clock). */
static int util_now(lua_State *L)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return luaL_error(L, "clock_gettime(CLOCK_MONOTONIC) failed");
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
	return 1;
}

/* core.utf8_len(s) -> number of characters | nil, 1-based offset of the first invalid byte. */
static int util_utf8_len(lua_State *L)
{
	size_t n, bad = 0;
	const char *s = luaL_checklstring(L, 1, &n);
	long count = vidu_utf8_count((const unsigned char *)s, n, &bad);
	if (count < 0) {
		lua_pushnil(L);
		lua_pushinteger(L, (lua_Integer)(bad + 1));
		return 2;
	}
	lua_pushinteger(L, (lua_Integer)count);
	return 1;
}

/* core.is_regular_or_absent(path) -> true | false, why: may a download create or replace
 * path? (a regular file or nothing; not a directory, FIFO, device or socket). The Lua side
 * downloads into a temporary "<path>.part-..." and renames it, so it asks this about the
 * final path before fetching, as the engine itself does for `output`. */
static int util_is_regular_or_absent(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	int err;
	const char *why = vidu_output_target(path, &err);
	if (why == NULL && err == 0) {
		lua_pushboolean(L, 1);
		return 1;
	}
	lua_pushboolean(L, 0);
	lua_pushstring(L, why != NULL ? why : strerror(err));
	return 2;
}

/* core.elide_data_uris(json, min) -> json', count: the engine's elide_data_uris on a string
 * (see util.h). */
static int util_elide_data_uris(lua_State *L)
{
	size_t n, len;
	const char *s = luaL_checklstring(L, 1, &n);
	lua_Integer min = luaL_checkinteger(L, 2);
	vidu_elide el;
	vidu_buf out;
	char *copy;
	int rc;
	luaL_argcheck(L, min >= VIDU_ELIDE_MIN, 2, "min must be at least 64");
	/* The result is never longer than the input: room for it is made before any malloc, so
	 * nothing raises while the C buffer is held. */
	copy = lua_newuserdata(L, n + 1);
	vidu_elide_init(&el, (size_t)min);
	vidu_buf_init(&out);
	rc = vidu_elide_feed(&el, &out, s, n);
	if (rc == 0)
		rc = vidu_elide_end(&el, &out);
	len = out.len;
	if (rc == 0 && len <= n && len > 0)
		memcpy(copy, out.data, len);
	vidu_buf_free(&out);
	if (rc != 0 || len > n)
		return luaL_error(L, rc != 0 ? "not enough memory" : "elide_data_uris grew its input");
	lua_pushlstring(L, copy, len);
	lua_pushinteger(L, (lua_Integer)el.count);
	return 2;
}

static const luaL_Reg util_funcs[] = {
	{ "now", util_now },
	{ "utf8_len", util_utf8_len },
	{ "is_regular_or_absent", util_is_regular_or_absent },
	{ "elide_data_uris", util_elide_data_uris },
	{ NULL, NULL }
};

/* Adds the util functions to the module table at the top of the stack. */
void vidu_open_util(lua_State *L)
{
	luaL_setfuncs(L, util_funcs, 0);
}

#endif /* VIDU_UTIL_NO_LUA */
