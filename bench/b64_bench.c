/*
 * b64_bench.c: C-level figures for bench/b64.lua. Times memcpy, and base64 encode and decode
 * with each implementation of csrc/b64.c, over the same buffer (50 MB by default), after
 * checking that the implementations agree. Built by bench/b64.lua with the project's flags.
 *
 *   b64_bench [MB] [runs]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "b64.h"

/* Monotonic seconds. */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Fills p[0..n) with xorshift bytes (content does not change base64 speed; be honest anyway). */
static void fill_random(unsigned char *p, size_t n)
{
	unsigned long long x = 88172645463325252ULL;
	size_t i;
	for (i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)(x >> 32);
	}
}

/* Allocates n bytes or exits. */
static void *xmalloc(size_t n)
{
	void *p = malloc(n > 0 ? n : 1);
	if (p == NULL) {
		fprintf(stderr, "b64_bench: out of memory\n");
		exit(1);
	}
	return p;
}

/* Exact-size buffers for every length up to 2000 so ASan/valgrind see any overread, and
 * the implementations must agree byte for byte. Returns the number of mismatches. */
static int check_agree(void)
{
	int bad = 0;
	size_t n;
	for (n = 0; n <= 2000 && vidu_b64_supported(VIDU_B64_AVX2); n++) {
		unsigned char *src = xmalloc(n), *back = xmalloc(n);
		size_t m = vidu_b64_encoded_len(n), len = 0, pos = 0;
		char *a = xmalloc(m), *b = xmalloc(m);
		fill_random(src, n);
		vidu_b64_encode_with(VIDU_B64_SCALAR, src, n, a);
		vidu_b64_encode_with(VIDU_B64_AVX2, src, n, b);
		if (memcmp(a, b, m) != 0)
			bad++;
		if (vidu_b64_decode_with(VIDU_B64_AVX2, b, m, back, &len, &pos) != VIDU_B64_OK ||
				len != n || memcmp(back, src, n) != 0)
			bad++;
		free(src);
		free(back);
		free(a);
		free(b);
	}
	return bad;
}

/* Prints one figure: best time of `runs` and GB/s of `bytes`. */
static void report(const char *what, double best, size_t bytes)
{
	printf("  %-28s %8.2f ms  %6.2f GB/s\n", what, best * 1e3, (double)bytes / best / 1e9);
}

/* Times memcpy, then encode and decode with each implementation the CPU has. */
int main(int argc, char **argv)
{
	size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 50;
	int runs = argc > 2 ? atoi(argv[2]) : 10, r, k;
	size_t n = mb * 1000 * 1000, m = vidu_b64_encoded_len(n), len = 0, pos = 0;
	unsigned char *src = xmalloc(n), *copy = xmalloc(n), *back = xmalloc(n);
	char *text = xmalloc(m);
	static const int impls[] = { VIDU_B64_AVX2, VIDU_B64_SCALAR };
	double best, t;

	if (check_agree() != 0) {
		fprintf(stderr, "b64_bench: implementations disagree\n");
		return 1;
	}
	fill_random(src, n);
	/* Touch every output page first: we time the work, not the kernel's page faults. */
	memset(copy, 0, n);
	memset(back, 0, n);
	memset(text, 0, m);

	printf("C level, %lu MB of random bytes, best of %d (GB/s of binary data):\n",
			(unsigned long)mb, runs);
	best = 1e9;
	for (r = 0; r < runs; r++) {
		t = now();
		memcpy(copy, src, n);
		t = now() - t;
		if (t < best)
			best = t;
	}
	if (memcmp(copy, src, n) != 0)
		return 1;
	report("memcpy", best, n);

	for (k = 0; k < 2; k++) {
		char label[64];
		if (!vidu_b64_supported(impls[k]))
			continue;
		best = 1e9;
		for (r = 0; r < runs; r++) {
			t = now();
			vidu_b64_encode_with(impls[k], src, n, text);
			t = now() - t;
			if (t < best)
				best = t;
		}
		snprintf(label, sizeof label, "encode (%s)", vidu_b64_impl_name(impls[k]));
		report(label, best, n);

		best = 1e9;
		for (r = 0; r < runs; r++) {
			t = now();
			if (vidu_b64_decode_with(impls[k], text, m, back, &len, &pos) != VIDU_B64_OK)
				return 1;
			t = now() - t;
			if (t < best)
				best = t;
		}
		if (len != n || memcmp(back, src, n) != 0)
			return 1;
		snprintf(label, sizeof label, "decode (%s)", vidu_b64_impl_name(impls[k]));
		report(label, best, n);
	}
	free(src);
	free(copy);
	free(back);
	free(text);
	return 0;
}
