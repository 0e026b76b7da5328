/*
 * buf.h: a growable byte buffer with no Lua in it, for code that must not raise (libcurl
 * callbacks) or that owns the memory across calls. Every function reports failure by its
 * return value; the caller decides whether and when to raise, after freeing what it owns.
 *
 *   data  the bytes (malloc'd; NULL while nothing was ever added)
 *   len   bytes in use
 *   cap   bytes allocated
 */
#ifndef VIDU_BUF_H
#define VIDU_BUF_H

#include <stdlib.h>
#include <string.h>

typedef struct vidu_buf {
	char *data;
	size_t len;
	size_t cap;
} vidu_buf;

/* An empty buffer owns nothing, so zeroed memory (calloc) is already a valid buffer. */
static inline void vidu_buf_init(vidu_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

/* Gives the memory back; the buffer is empty and usable again afterwards. */
static inline void vidu_buf_free(vidu_buf *b)
{
	free(b->data);
	vidu_buf_init(b);
}

/* Makes room for `extra` more bytes, doubling so that appends stay amortised O(1).
 * Returns 0, or -1 (buffer unchanged) when the size overflows or malloc fails. */
static inline int vidu_buf_reserve(vidu_buf *b, size_t extra)
{
	size_t need, cap;
	char *p;
	if (extra <= b->cap - b->len)
		return 0;
	if (extra > (size_t)-1 - b->len)
		return -1;
	need = b->len + extra;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > (size_t)-1 / 2 ? need : cap * 2;
	p = (char *)realloc(b->data, cap);
	if (p == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

/* Appends n bytes. Returns 0, or -1 (buffer unchanged) when memory runs out. */
static inline int vidu_buf_append(vidu_buf *b, const void *src, size_t n)
{
	if (n == 0)
		return 0;
	if (vidu_buf_reserve(b, n) != 0)
		return -1;
	memcpy(b->data + b->len, src, n);
	b->len += n;
	return 0;
}

#endif
