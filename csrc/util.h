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

#endif
