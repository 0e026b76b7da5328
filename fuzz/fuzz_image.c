/*
 * fuzz_image.c: the image header probe (csrc/image.c).
 *
 * The probe must never read past the bytes it is given (ASan: each call gets an exact-size
 * copy), and its answers must hang together:
 *   - OK: width and height > 0 and within the format's field (PNG 2^31-1, JPEG 65535, WebP
 *     2^24), format and mime a known pair, and the signature sniffer names the same mime;
 *   - NEED_MORE: a byte count beyond what it had, and a "truncated ..." message;
 *   - ERROR: a message;
 *   - a prefix never contradicts the whole: where the first m bytes already give OK or ERROR,
 *     all n bytes give the same answer; where they give NEED_MORE with need <= n, the whole
 *     goes further than that (OK, ERROR, or NEED_MORE with a larger need), and with need > n
 *     the whole cannot be OK.
 */
#include "fuzz.h"
#include "image.h"

struct probe {
	int status;
	struct vidu_image_info info;
	const char *err;
};

/* Probes an exact-size copy of p[0..n). */
static struct probe probe(const unsigned char *p, size_t n)
{
	struct probe r;
	unsigned char *c = fuzz_copy(p, n);
	r.status = vidu_image_probe(c, n, &r.info, &r.err);
	free(c);
	return r;
}

/* The sniffer on an exact-size copy. */
static const char *sniff(const unsigned char *p, size_t n)
{
	unsigned char *c = fuzz_copy(p, n);
	const char *mime = vidu_image_sniff_mime(c, n);
	free(c);
	return mime;
}

/* The properties of one answer on its own. */
static void check_alone(const struct probe *r, const unsigned char *p, size_t n)
{
	const char *mime = sniff(p, n);
	CHECK(mime == NULL || strncmp(mime, "image/", 6) == 0);
	switch (r->status) {
	case VIDU_IMAGE_OK:
		CHECK(r->err == NULL);
		CHECK(r->info.width > 0 && r->info.height > 0);
		CHECK(r->info.format != NULL && r->info.mime != NULL);
		CHECK(strncmp(r->info.mime, "image/", 6) == 0 &&
			strcmp(r->info.mime + 6, r->info.format) == 0);
		CHECK(mime != NULL && strcmp(mime, r->info.mime) == 0);
		if (strcmp(r->info.format, "png") == 0)
			CHECK(r->info.width <= 0x7fffffffUL && r->info.height <= 0x7fffffffUL);
		else if (strcmp(r->info.format, "jpeg") == 0)
			CHECK(r->info.width <= 65535 && r->info.height <= 65535);
		else
			CHECK(strcmp(r->info.format, "webp") == 0 &&
				r->info.width <= (1UL << 24) && r->info.height <= (1UL << 24));
		break;
	case VIDU_IMAGE_NEED_MORE:
		CHECK(r->info.need > n);
		CHECK(r->err != NULL && strncmp(r->err, "truncated", 9) == 0);
		break;
	case VIDU_IMAGE_ERROR:
		CHECK(r->err != NULL && r->err[0] != '\0');
		break;
	default:
		CHECK(!"unknown status");
	}
}

/* A prefix's answer against the whole's. */
static void check_prefix(const struct probe *part, size_t m, const struct probe *whole, size_t n)
{
	if (part->status == VIDU_IMAGE_OK) {
		CHECK(whole->status == VIDU_IMAGE_OK);
		CHECK(whole->info.width == part->info.width && whole->info.height == part->info.height);
		CHECK(strcmp(whole->info.format, part->info.format) == 0);
	} else if (part->status == VIDU_IMAGE_ERROR) {
		CHECK(whole->status == VIDU_IMAGE_ERROR);
		CHECK(strcmp(whole->err, part->err) == 0);
	} else if (part->info.need <= n) {
		CHECK(whole->status != VIDU_IMAGE_NEED_MORE || whole->info.need > part->info.need);
	} else {
		/* The whole is shorter than the prefix asked for: it cannot have found the size
		 * (it may find an error: "RIF" might be WebP, "RIFx" is not). */
		CHECK(whole->status != VIDU_IMAGE_OK);
	}
	(void)m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct probe whole = probe(data, size);
	size_t cuts[4], k;
	check_alone(&whole, data, size);
	/* Prefixes: one byte short, half, a quarter, and one the input picks. */
	cuts[0] = size > 0 ? size - 1 : 0;
	cuts[1] = size / 2;
	cuts[2] = size / 4;
	cuts[3] = size > 0 ? data[0] % (size + 1) : 0;
	for (k = 0; k < 4; k++) {
		struct probe part = probe(data, cuts[k]);
		check_alone(&part, data, cuts[k]);
		if (cuts[k] == 0) /* "empty image data": an error about nothing, not about a prefix */
			continue;
		check_prefix(&part, cuts[k], &whole, size);
		/* What image_info_file does: read up to `need`, probe again. */
		if (part.status == VIDU_IMAGE_NEED_MORE && part.info.need <= size) {
			struct probe next = probe(data, part.info.need);
			check_alone(&next, data, part.info.need);
			CHECK(next.status != VIDU_IMAGE_NEED_MORE || next.info.need > part.info.need);
		}
	}
	return 0;
}
