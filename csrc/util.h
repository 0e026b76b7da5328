/*
 * util.h: plain-C helpers shared by the core's files, with no Lua in them. They report
 * failure by their return value, so a caller holding memory or a FILE never has to raise.
 */
#ifndef VIDU_UTIL_H
#define VIDU_UTIL_H

#include <stddef.h>
#include <stdio.h>

/* Checks that path names a regular file and sets *size to its length in bytes (SIZE_MAX if
 * larger). Returns NULL, or why not: strerror(errno) of the stat, or "not a regular file".
 * Checking before fopen means a FIFO is refused instead of blocking the open. */
const char *vidu_file_size(const char *path, size_t *size);

/* Reads up to want bytes into buf; fewer only at end of file or on a read error (tell them
 * apart with ferror). Returns the number of bytes read. */
size_t vidu_read_full(FILE *f, unsigned char *buf, size_t want);

/* Whether path may be created or replaced as a download's output. Returns NULL with *err = 0
 * when it names a regular file (symbolic links followed) or nothing at all; NULL with *err set
 * to the errno of a failed stat (a denied search, a component that is not a directory); or,
 * with *err = 0, what it is instead: "is a directory", "is a FIFO", "is a device", "is a
 * socket", "is not a regular file". Writing into a FIFO would block and into a device would
 * send the bytes somewhere else, so downloads refuse such targets. */
const char *vidu_output_target(const char *path, int *err);

/* Counts the UTF-8 characters of p[0..n) (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF). Returns the count, or -1 with *bad set to the 0-based offset of the first
 * byte that does not start a valid sequence. */
long vidu_utf8_count(const unsigned char *p, size_t n, size_t *bad);

/* ASCII case-insensitive comparison of a[0..n) and b[0..n) (locale-independent): 1 if equal. */
int vidu_ascii_ieq(const char *a, const char *b, size_t n);

/* The shortest limit vidu_elide takes: longer than any note it leaves. */
#define VIDU_ELIDE_MIN 64

/* Cuts long data: URIs out of a JSON text as it arrives, for the answers that echo back an
 * image sent inline, so the copy never becomes a Lua string nor even a C buffer: in a text
 * that begins with '{' or '[' (after blanks), every string that begins "data:" (any case)
 * and takes more than min bytes (escapes as written) becomes "data:... (N bytes, not kept)",
 * N its length in the text; at most min bytes of it are ever held. Other text passes as it
 * is, as does everything when min < VIDU_ELIDE_MIN. A string still open at the end (a cut
 * answer) that is being cut ends as the note without its closing quote. */
typedef struct vidu_elide {
	size_t min;               /* the limit, bytes */
	int mode;                 /* where the text so far ends (util.c) */
	size_t start;             /* in a string: the offset in out of its opening quote */
	size_t len;               /* in a string: its content's bytes so far */
	int odd;                  /* in a string: the content so far ends in an odd run of '\' */
	char head[5];             /* in a string: its first bytes, to tell a data: URI */
	size_t count;             /* strings cut so far */
} vidu_elide;

struct vidu_buf;
void vidu_elide_init(vidu_elide *el, size_t min);
/* Feeds the next n bytes of the text; what is kept is appended to out, whose bytes from the
 * first fed on are the elider's to rewrite. Returns 0, or -1 when out could not grow. */
int vidu_elide_feed(vidu_elide *el, struct vidu_buf *out, const char *p, size_t n);
/* Ends the text (see above). Returns 0, or -1 when out could not grow. */
int vidu_elide_end(vidu_elide *el, struct vidu_buf *out);

#endif
