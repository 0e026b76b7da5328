/*
 * image.c: PNG, JPEG and WebP format and pixel size from the header bytes alone.
 *
 * vidu_image_probe (image.h) is plain C over (pointer, length) and checks the length before
 * every read. When the data ends inside the header it returns VIDU_IMAGE_NEED_MORE with the
 * byte count it needs, which image_info_file uses to read a file a piece at a time. The Lua
 * half is left out with -DVIDU_IMAGE_NO_LUA (fuzz/fuzz_image.c builds the probe alone).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef VIDU_IMAGE_NO_LUA
#include "core.h"
#include "util.h"
#endif
#include "image.h"

static const unsigned char png_signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

/* First read of image_info_file; it grows from there only if the header needs it. */
#define IMAGE_FIRST_READ (64 * 1024)

/* Big-endian 16-bit value at p. */
static unsigned long be16(const unsigned char *p)
{
	return (unsigned long)p[0] << 8 | p[1];
}

/* Big-endian 32-bit value at p. */
static unsigned long be32(const unsigned char *p)
{
	return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3];
}

/* Little-endian 24-bit value at p. */
static unsigned long le24(const unsigned char *p)
{
	return (unsigned long)p[2] << 16 | (unsigned long)p[1] << 8 | p[0];
}

/* Little-endian 32-bit value at p. */
static unsigned long le32(const unsigned char *p)
{
	return (unsigned long)p[3] << 24 | le24(p);
}

/* Records that the probe needs `need` bytes in all; returns VIDU_IMAGE_NEED_MORE. */
static int need_more(struct vidu_image_info *out, const char **err, size_t need, const char *msg)
{
	out->need = need;
	*err = msg;
	return VIDU_IMAGE_NEED_MORE;
}

/* Fails with a static message; returns VIDU_IMAGE_ERROR. */
static int fail(const char **err, const char *msg)
{
	*err = msg;
	return VIDU_IMAGE_ERROR;
}

/* Fills *out on success; returns VIDU_IMAGE_OK. */
static int found(struct vidu_image_info *out, const char *format, const char *mime,
		unsigned long w, unsigned long h)
{
	out->format = format;
	out->mime = mime;
	out->width = w;
	out->height = h;
	return VIDU_IMAGE_OK;
}

/* Whether the first min(n, len) bytes of p equal those of sig. */
static int prefix_matches(const unsigned char *p, size_t n, const unsigned char *sig, size_t len)
{
	return memcmp(p, sig, n < len ? n : len) == 0;
}

/*
 * PNG: the 8-byte signature, then the IHDR chunk, which must come first: length 13, type
 * "IHDR", width and height as big-endian 31-bit values.
 */
static int probe_png(const unsigned char *p, size_t n, struct vidu_image_info *out,
		const char **err)
{
	unsigned long w, h;
	if (!prefix_matches(p, n, png_signature, 8))
		return fail(err, "corrupt PNG: bad signature (file damaged by a text-mode transfer?)");
	if (n < 8)
		return need_more(out, err, 8, "truncated PNG header: signature incomplete");
	if (n < 16)
		return need_more(out, err, 16, "truncated PNG header: IHDR chunk incomplete");
	if (memcmp(p + 12, "IHDR", 4) != 0)
		return fail(err, "corrupt PNG: IHDR missing (the first chunk must be IHDR)");
	if (be32(p + 8) != 13)
		return fail(err, "corrupt PNG: IHDR chunk length is not 13");
	if (n < 24)
		return need_more(out, err, 24, "truncated PNG header: IHDR chunk incomplete");
	w = be32(p + 16);
	h = be32(p + 20);
	if (w == 0 || h == 0)
		return fail(err, "corrupt PNG: width or height is 0");
	if (w > 0x7fffffffUL || h > 0x7fffffffUL)
		return fail(err, "corrupt PNG: width or height is over 2^31-1");
	return found(out, "png", "image/png", w, h);
}

/* Whether a JPEG marker starts a frame (SOF0..SOF15 but DHT C4, JPG C8 and DAC CC). */
static int is_sof(unsigned m)
{
	return m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
}

/*
 * JPEG: walk the markers from SOI, skipping every segment by its length (APPn/EXIF of any
 * size, DQT, DHT, COM, ...) and any 0xFF fill bytes, until a SOF segment gives the size:
 * length(2) precision(1) height(2) width(2).
 */
static int probe_jpeg(const unsigned char *p, size_t n, struct vidu_image_info *out,
		const char **err)
{
	static const char no_sof[] = "truncated JPEG: no SOF marker before end of data";
	size_t pos = 2;
	if (n < 2)
		return need_more(out, err, 2, no_sof);
	if (p[1] != 0xd8)
		return fail(err, "unknown image format");
	for (;;) {
		unsigned m;
		size_t len;
		if (n <= pos)
			return need_more(out, err, pos + 1, no_sof);
		if (p[pos] != 0xff)
			return fail(err, "corrupt JPEG: expected a marker, found other data");
		while (pos < n && p[pos] == 0xff)
			pos++;
		if (pos == n)
			return need_more(out, err, pos + 1, no_sof);
		m = p[pos++];
		if (m == 0x00)
			return fail(err, "corrupt JPEG: stuffed 0xFF00 byte outside scan data");
		if (m == 0xd9)
			return fail(err, "corrupt JPEG: end of image (EOI) before any SOF marker");
		if (m == 0xd8)
			return fail(err, "corrupt JPEG: second SOI marker before any SOF marker");
		if (m == 0xda)
			return fail(err, "corrupt JPEG: scan (SOS) before any SOF marker");
		if (m == 0x01 || (m >= 0xd0 && m <= 0xd7))
			continue; /* TEM and RSTn have no length */
		if (n - pos < 2)
			return need_more(out, err, pos + 2, no_sof);
		len = be16(p + pos);
		if (len < 2)
			return fail(err, "corrupt JPEG: segment length below 2");
		if (is_sof(m)) {
			unsigned long w, h;
			if (len < 8)
				return fail(err, "corrupt JPEG: SOF segment too short");
			if (n - pos < 7)
				return need_more(out, err, pos + 7,
						"truncated JPEG: SOF segment incomplete");
			h = be16(p + pos + 3);
			w = be16(p + pos + 5);
			if (h == 0)
				return fail(err, "corrupt JPEG: height 0 in SOF (DNL-defined height "
						"is not supported)");
			if (w == 0)
				return fail(err, "corrupt JPEG: width 0 in SOF");
			return found(out, "jpeg", "image/jpeg", w, h);
		}
		pos += len;
	}
}

/*
 * WebP: "RIFF" size "WEBP", then the first chunk: "VP8 " (lossy: 3-byte frame tag, start
 * code 9d 01 2a, 14-bit width and height), "VP8L" (lossless: signature 0x2f, then 14 bits of
 * width-1 and 14 of height-1) or "VP8X" (extended: flags, 3 reserved bytes, 24-bit canvas
 * width-1 and height-1).
 */
static int probe_webp(const unsigned char *p, size_t n, struct vidu_image_info *out,
		const char **err)
{
	static const char short_hdr[] = "truncated WebP header";
	unsigned long w, h;
	if (n < 12)
		return need_more(out, err, 12, short_hdr);
	if (memcmp(p + 8, "WEBP", 4) != 0)
		return fail(err, "unknown image format (a RIFF file but not WebP)");
	if (n < 16)
		return need_more(out, err, 16, short_hdr);
	if (memcmp(p + 12, "VP8 ", 4) == 0) {
		if (n < 30)
			return need_more(out, err, 30, "truncated WebP header: VP8 frame header incomplete");
		if (p[20] & 0x01)
			return fail(err, "corrupt WebP: VP8 data does not start with a key frame");
		if (p[23] != 0x9d || p[24] != 0x01 || p[25] != 0x2a)
			return fail(err, "corrupt WebP: VP8 start code missing");
		w = (p[26] | (unsigned long)p[27] << 8) & 0x3fff;
		h = (p[28] | (unsigned long)p[29] << 8) & 0x3fff;
		if (w == 0 || h == 0)
			return fail(err, "corrupt WebP: VP8 width or height is 0");
		return found(out, "webp", "image/webp", w, h);
	}
	if (memcmp(p + 12, "VP8L", 4) == 0) {
		unsigned long bits;
		if (n < 25)
			return need_more(out, err, 25, "truncated WebP header: VP8L header incomplete");
		if (p[20] != 0x2f)
			return fail(err, "corrupt WebP: VP8L signature missing");
		bits = le32(p + 21);
		if (bits >> 29 != 0)
			return fail(err, "corrupt WebP: unknown VP8L version");
		w = (bits & 0x3fff) + 1;
		h = ((bits >> 14) & 0x3fff) + 1;
		return found(out, "webp", "image/webp", w, h);
	}
	if (memcmp(p + 12, "VP8X", 4) == 0) {
		if (n < 30)
			return need_more(out, err, 30, "truncated WebP header: VP8X chunk incomplete");
		if (le32(p + 16) < 10)
			return fail(err, "corrupt WebP: VP8X chunk too short");
		w = le24(p + 24) + 1;
		h = le24(p + 27) + 1;
		return found(out, "webp", "image/webp", w, h);
	}
	return fail(err, "corrupt WebP: first chunk is not VP8, VP8L or VP8X");
}

/* Picks the format by its first bytes and reads the header (see image.h). */
int vidu_image_probe(const unsigned char *p, size_t n, struct vidu_image_info *out,
		const char **err)
{
	out->format = NULL;
	out->mime = NULL;
	out->width = 0;
	out->height = 0;
	out->need = 0;
	*err = NULL;
	if (n == 0)
		return fail(err, "empty image data");
	/* A damaged PNG signature is still called PNG if its first 4 bytes are right. */
	if (prefix_matches(p, n, png_signature, 4))
		return probe_png(p, n, out, err);
	if (p[0] == 0xff)
		return probe_jpeg(p, n, out, err);
	if (prefix_matches(p, n, (const unsigned char *)"RIFF", 4))
		return probe_webp(p, n, out, err);
	return fail(err, "unknown image format (not PNG, JPEG or WebP)");
}

/* The mime type of a PNG, JPEG or WebP signature at p, else NULL. */
const char *vidu_image_sniff_mime(const unsigned char *p, size_t n)
{
	if (n >= 8 && memcmp(p, png_signature, 8) == 0)
		return "image/png";
	if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return "image/jpeg";
	if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
		return "image/webp";
	return NULL;
}

#ifndef VIDU_IMAGE_NO_LUA

/* ---------------------------------------------------------------------------------------- */
/* Lua binding. */

/* Pushes { format, mime, width, height } for a probe result. */
static void push_info(lua_State *L, const struct vidu_image_info *info)
{
	lua_createtable(L, 0, 5);
	lua_pushstring(L, info->format);
	lua_setfield(L, -2, "format");
	lua_pushstring(L, info->mime);
	lua_setfield(L, -2, "mime");
	lua_pushinteger(L, (lua_Integer)info->width);
	lua_setfield(L, -2, "width");
	lua_pushinteger(L, (lua_Integer)info->height);
	lua_setfield(L, -2, "height");
}

/* core.image_info(bytes) -> { format, mime, width, height } | nil, err. */
static int l_image_info(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	struct vidu_image_info info;
	const char *err;
	if (vidu_image_probe((const unsigned char *)s, n, &info, &err) != VIDU_IMAGE_OK) {
		lua_pushnil(L);
		lua_pushstring(L, err);
		return 2;
	}
	push_info(L, &info);
	return 1;
}

/*
 * core.image_info_file(path) -> { format, mime, width, height, size, mtime } | nil, "<path>: <why>".
 *
 * Reads IMAGE_FIRST_READ bytes, then more (at least doubling) only while the probe says the
 * header goes on. The buffer is malloc'd and the FILE open only between fopen and the cleanup
 * below, where nothing calls Lua, so nothing can raise while they are held.
 */
static int l_image_info_file(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct vidu_image_info info;
	size_t n = 0, cap, fsize = 0;
	const char *why = vidu_file_size(path, &fsize);
	unsigned char *buf = NULL;
	int status = VIDU_IMAGE_ERROR, err = 0, eof = 0;
	FILE *f = NULL;
	struct stat st;

	if (why != NULL)
		goto done_io;
	f = fopen(path, "rb");
	if (f == NULL) {
		err = errno;
		goto done_io;
	}
	cap = fsize < IMAGE_FIRST_READ ? fsize : IMAGE_FIRST_READ;
	for (;;) {
		unsigned char *grown = (unsigned char *)realloc(buf, cap > 0 ? cap : 1);
		size_t want = cap - n, got;
		if (grown == NULL) {
			why = "out of memory";
			break;
		}
		buf = grown;
		got = vidu_read_full(f, buf + n, want);
		n += got;
		if (got < want) {
			if (ferror(f)) {
				err = errno ? errno : EIO;
				break;
			}
			eof = 1;
		}
		status = vidu_image_probe(buf, n, &info, &why);
		if (status != VIDU_IMAGE_NEED_MORE)
			break;
		if (eof || n >= fsize)
			break; /* the file ends inside the header: why says "truncated ..." */
		/* At least double, so a header far into the file costs a few reads, not many. */
		cap = info.need > 2 * n ? info.need : 2 * n;
		if (cap > fsize)
			cap = fsize;
	}
	if (status == VIDU_IMAGE_OK)
		why = NULL;
done_io:
	free(buf);
	if (f != NULL)
		fclose(f);

	if (status == VIDU_IMAGE_OK && err == 0) {
		push_info(L, &info);
		lua_pushinteger(L, (lua_Integer)fsize);
		lua_setfield(L, -2, "size");
		/* mtime (seconds, with the nanoseconds as a fraction): with path and size, the key
		 * under which a client reuses what it made of this file (vidu.images' cache). */
		if (stat(path, &st) == 0) {
			lua_pushnumber(L, (lua_Number)st.st_mtim.tv_sec + (lua_Number)st.st_mtim.tv_nsec / 1e9);
			lua_setfield(L, -2, "mtime");
		}
		return 1;
	}
	lua_pushnil(L);
	lua_pushfstring(L, "%s: %s", path, err != 0 ? strerror(err) : why);
	return 2;
}

/* core.file_stat(path) -> size, mtime | nil, err: a regular file's size and mtime as
 * image_info_file reports them (mtime in seconds with the nanoseconds as a fraction), for a
 * caller that keeps what it learned of a file while these stay the same: one stat instead of
 * an open and a read of the header. */
static int l_file_stat(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct stat st;
	if (stat(path, &st) != 0) {
		int err = errno;
		lua_pushnil(L);
		lua_pushfstring(L, "%s: %s", path, strerror(err));
		return 2;
	}
	if (!S_ISREG(st.st_mode)) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s: not a regular file", path);
		return 2;
	}
	lua_pushinteger(L, (lua_Integer)st.st_size);
	lua_pushnumber(L, (lua_Number)st.st_mtim.tv_sec + (lua_Number)st.st_mtim.tv_nsec / 1e9);
	return 2;
}

static const luaL_Reg image_funcs[] = {
	{ "image_info", l_image_info },
	{ "image_info_file", l_image_info_file },
	{ "file_stat", l_file_stat },
	{ NULL, NULL }
};

/* Adds the image functions to the module table at the top of the stack. */
void vidu_open_image(lua_State *L)
{
	luaL_setfuncs(L, image_funcs, 0);
}

#endif /* VIDU_IMAGE_NO_LUA */
