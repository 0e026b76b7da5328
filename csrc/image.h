/*
 * image.h: format and pixel size of PNG, JPEG and WebP images from their header bytes, with
 * no Lua in it. image.c adds core.image_info and core.image_info_file on top.
 *
 * The probe never reads past the n bytes it is given. When the header does not end within
 * them it says so (VIDU_IMAGE_NEED_MORE) and how many bytes would let it go on, so a caller
 * reading a file can read a little more instead of the whole file.
 */
#ifndef VIDU_IMAGE_H
#define VIDU_IMAGE_H

#include <stddef.h>

/* What vidu_image_probe returns. */
enum vidu_image_status {
	VIDU_IMAGE_ERROR = -1,    /* not an image we know, or a corrupt header: *err says why */
	VIDU_IMAGE_OK = 0,        /* *out is filled */
	VIDU_IMAGE_NEED_MORE = 1  /* the data ends inside the header: *err is the "truncated ..."
	                           * message to show if there is no more, out->need a byte count
	                           * that lets the probe go further */
};

/* What the probe found. */
struct vidu_image_info {
	const char *format;   /* "png", "jpeg" or "webp" (static strings) */
	const char *mime;     /* "image/png", "image/jpeg" or "image/webp" */
	unsigned long width;  /* pixels, > 0 */
	unsigned long height; /* pixels, > 0 */
	size_t need;          /* with VIDU_IMAGE_NEED_MORE: total bytes to have next time (> n) */
};

/* Reads format and size from the header in p[0..n). Returns a vidu_image_status; *err is a
 * static message (e.g. "corrupt PNG: IHDR missing") unless the result is VIDU_IMAGE_OK. */
int vidu_image_probe(const unsigned char *p, size_t n, struct vidu_image_info *out,
		const char **err);

/* The image mime type told by the first bytes alone (PNG, JPEG or WebP signature), or NULL.
 * For data: URIs; it does not check that the rest of the header is sound. */
const char *vidu_image_sniff_mime(const unsigned char *p, size_t n);

#endif
