/*
 * fuzz.h: what the libFuzzer targets of fuzz/ share. Each target checks properties of the
 * plain-C half of the core (round trips, agreement between implementations, bounds), and a
 * property that does not hold aborts like a crash: a silent wrong answer is a finding too.
 *
 * Inputs are copied into buffers of exactly the size under test before each call, so
 * AddressSanitizer reports any read or write past them.
 */
#ifndef VIDU_FUZZ_H
#define VIDU_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with the failed property and where it is, so libFuzzer saves the input. */
#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "property failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

/* A malloc'd copy of p[0..n) of exactly n bytes: malloc(0) under ASan is a real block of
 * size 0, so even a one-byte read of an empty input is reported. */
static inline unsigned char *fuzz_copy(const void *p, size_t n)
{
	unsigned char *c = (unsigned char *)malloc(n);
	CHECK(c != NULL);
	if (n > 0)
		memcpy(c, p, n);
	return c;
}

/* A buffer of exactly n bytes to write into. */
static inline unsigned char *fuzz_alloc(size_t n)
{
	unsigned char *c = (unsigned char *)malloc(n);
	CHECK(c != NULL);
	return c;
}

#endif
