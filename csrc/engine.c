/*
 * engine.c: core.engine, HTTP transfers on one libcurl multi handle.
 *
 * Ownership. A transfer is a C struct (struct xfer) owned by its engine from the moment it
 * exists until step()/wait() has handed its result to Lua, or until the engine is closed. It
 * is never a Lua object, so the garbage collector cannot free memory libcurl still points at.
 *
 * No Lua from libcurl. The callbacks below (write, header, read, seek, progress) only fill C
 * buffers and files and set flags; step() turns what happened into Lua tables afterwards.
 *
 * Raising. luaL_error longjmps, so request() validates every argument and builds every Lua
 * value it needs first, and only then allocates; on a later failure it frees before raising.
 * step() builds each result table while the transfer is still owned by the engine and frees
 * the transfer only once the table is safely in the result array.
 *
 * The API (README.md, "The C core", says the same for users):
 *   core.engine{ max_host_connections = 32, max_total_connections = 0, user_agent = ... }
 *   engine:request{ method, url, headers, body | body_file | body_parts, output,
 *                   connect_timeout = 10, timeout = 0, stall_timeout = 0,
 *                   max_response = 64 MiB, follow = true, max_redirects = 5,
 *                   fresh_connect = (method is POST or PATCH), ca_file, ca_path,
 *                   stream = false } -> id
 *     Unknown option names and wrong types raise. With output, a 2xx body goes to the file
 *     (opened at its first byte, so a failed request leaves an existing file alone); any
 *     other status keeps its body in memory as result.body, for the error message, up to
 *     ERROR_BODY_CAP (1 MiB; more fails as too_large, status and headers still reported).
 *   output: a path that exists and is not a regular file (a directory, FIFO, device, socket)
 *     is refused before anything is sent: the result fails with error "file", sent = false,
 *     and a message naming the path and its kind. The file is also opened without blocking
 *     and checked again at the first byte, so a FIFO put there meanwhile cannot hang us. The
 *     Lua side writes to "<path>.part-..." and renames: it checks the final path first with
 *     core.is_regular_or_absent(path) (util.c), which applies the same rule.
 *   body_parts = { part, ... }: a body sent piece by piece, in order, by the read callback,
 *     so a large file never becomes a Lua string or a buffer of its size. A part is a string
 *     (sent as it is: a JSON prefix, say) or { file = path, base64 = false, size = n }: the
 *     file's bytes, or with base64 = true their RFC 4648 encoding (b64.c), made on the fly a
 *     chunk at a time (PART_CHUNK bytes of file per step; the memory a transfer holds does
 *     not grow with the file). The files are opened by request(); size, when given, is the
 *     size the caller checked, and a file of another size then fails before anything is
 *     sent. Content-Length is exact from the start: the strings plus each file's size or
 *     4 * ceil(size / 3). libcurl may rewind the body (a 307/308 redirect, auth): the seek
 *     callback starts every part again from its first byte. A file that shrinks or grows
 *     while it is sent fails the transfer with error "file" and a message naming its path
 *     (content changed in place at the same size is not detected). Exclusive with body and
 *     body_file.
 *   max_response caps the body in memory and in output alike (curl_off_t throughout: 2 GiB,
 *     2^31, and far beyond are exact); a Content-Length over it fails before the body.
 *   stall_timeout = N (seconds, 0 = none; fractions round up to whole seconds, libcurl's
 *     unit): a transfer that moves less than 1 byte per second on average for N seconds
 *     (nothing at all, or a trickle) fails with error "stalled" (curl_code 28, libcurl's
 *     CURLOPT_LOW_SPEED_LIMIT/TIME). "timeout" stays the kind of the connect and total
 *     timeouts, so the Lua side can tell a dead download (retryable) from a deadline.
 *   ca_file, ca_path: CURLOPT_CAINFO / CURLOPT_CAPATH (PEM bundle; hashed directory, as made
 *     by `openssl rehash`). When neither is given, the environment is read at each request
 *     as the curl tool reads it (libcurl itself does not): CURL_CA_BUNDLE, else SSL_CERT_FILE
 *     for the file and SSL_CERT_DIR for the directory; empty values are ignored. Otherwise
 *     libcurl's built-in defaults (the system store) apply.
 *   stream = true: the body is read while it arrives (a server-sent event stream). The write
 *     callback only appends to the transfer's C buffer; step()/wait() then report, besides
 *     finished results, an arrival notice { id, arrived = bytes waiting, status [, headers on
 *     the first notice] } (no `ok` field: that tells it from a result) at most once per call
 *     for each such transfer that received bytes, and engine:take(id) hands them to Lua.
 *     max_response caps the bytes waiting (not yet taken), not the whole stream: a reader
 *     that falls behind fails the transfer as too_large instead of growing memory. Not with
 *     output. The finished result's body is what was not taken yet.
 *   skip_repeats = true (with stream): a chunk that repeats the last one byte for byte, both
 *     ending where an event ends (a blank line), is dropped in the write callback: no
 *     notice, nothing to take. For a status stream that sends the same status again and
 *     again while nothing changes. The bytes still count (progress, `bytes`); the result
 *     says how many chunks were dropped (`repeats`).
 *   elide_data_uris = N (bytes, >= 64; not with stream or output): in a JSON answer kept in
 *     memory, every string that begins "data:" and takes more than N bytes is cut to
 *     "data:... (M bytes, not kept)" by the write callback as the body arrives (util.h,
 *     vidu_elide): at most N bytes of it are ever held. For a submit answer that echoes an
 *     inline image back: the copy costs no C buffer, no Lua string, no collector work. The
 *     result says how many strings were cut (`elided`).
 *   engine:take(id) -> bytes | nil   the bytes a stream transfer received since the last
 *     take (nil: none, or no such transfer)
 *   engine:step([poll_sockets = true]) / engine:wait(ms = 1000 [, settle_ms]) -> { result, ... }
 *     (step never blocks; on a watched engine it polls the recorded sockets without waiting
 *     unless poll_sockets is false: a host that watches them itself says so; wait returns
 *     at once when results or arrival notices are already waiting; with nothing in flight it
 *     sleeps the ms). settle_ms: when the engine was last driven less than settle_ms ago, wait
 *     first sleeps the rest (within ms) so that bytes of many streams pile up and one pass
 *     handles them: libcurl's perform costs a poll of every transfer's socket, however few
 *     are ready. The price is up to settle_ms of latency on anything that arrives meanwhile.
 *   engine:progress(id) -> down_now, down_total, up_now, up_total | nil
 *   engine:configure{ max_host_connections, max_total_connections }   changes the bounds of
 *     a running engine (libcurl applies them to connections it opens from then on)
 *   engine:cancel(id) -> bool;  engine:pending() -> n (not yet reported, canceled included)
 *   engine:timeout() -> ms | -1;  engine:close() (also __gc, __close)
 *   engine:watch()   host-driven sockets from now on (see "Sockets a host watches" below):
 *   engine:sockets() -> { fd, "r"|"w"|"rw"|"remove", ... };  engine:socket_action([fd, ev])
 *   ok result:   id, ok, status, headers, body, url, bytes, http_version, connects, time
 *   fail result: id, ok, error, message, curl_code, sent, url, bytes [, status, headers]
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#ifdef __linux__
#include <sys/epoll.h>
#define VIDU_EPOLL 1
#endif
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "b64.h"
#include "buf.h"
#include "core.h"
#include "util.h"

#define ENGINE_MT "vidu.engine"
#define DEFAULT_USER_AGENT "lua-vidu/0.1"
#define DEFAULT_MAX_HOST_CONNECTIONS 32
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_MAX_RESPONSE ((lua_Number)64 * 1024 * 1024)
#define DEFAULT_MAX_REDIRECTS 5
/* Response header bytes kept per transfer. Below libcurl 7.88's own total (300 KB, which it
 * reports as a receive error), so that too many headers are reported as too_large. */
#define MAX_HEADER_BYTES (256 * 1024)
/* An error answer to a download (output given, status not 2xx) is kept in memory for the
 * message; a hostile or broken server must not make that a 2 GiB allocation. */
#define ERROR_BODY_CAP ((curl_off_t)1024 * 1024)
/* Largest buffer sized up front from a Content-Length; beyond it the buffer grows as bytes
 * arrive, so a lying header cannot reserve max_response bytes at once. */
#define PRESIZE_MAX ((curl_off_t)64 * 1024 * 1024)

/* The one global: curl_global_init must run once per process, before any other curl call. */
static int curl_ready = 0;

/* Why our side (not libcurl) ended a transfer; decides the error kind over the CURLcode. */
enum {
	FAIL_NONE = 0,
	FAIL_TOO_LARGE, /* body over max_response */
	FAIL_ERROR_BODY, /* the error answer to a download over ERROR_BODY_CAP */
	FAIL_HEADERS,   /* headers over MAX_HEADER_BYTES */
	FAIL_FILE,      /* output/body_file could not be opened, read or written */
	FAIL_NOMEM,     /* malloc failed inside a callback */
	FAIL_CANCELED   /* engine:cancel(id) */
};

/* File bytes a body_parts transfer reads per step for base64: a multiple of 3, so every
 * step but the last encodes whole groups, and 4/3 of it (64 KiB) fills libcurl's default
 * upload buffer. */
#define PART_CHUNK (3 * 16384)
/* Largest file a part may send: far beyond any real body, and 4/3 of it still fits in a
 * curl_off_t. */
#define PART_FILE_MAX ((curl_off_t)1 << 60)

/* One piece of a body_parts body. */
typedef struct body_part {
	char *data;               /* a string part's bytes (NULL for a file or data part) */
	const char *mem;          /* a data part's bytes: a Lua string the engine anchors */
	char *path;               /* a file part's path (NULL for a string part) */
	FILE *f;                  /* the file part, open from request() until the transfer ends */
	curl_off_t size;          /* bytes of the string, or of the file */
	curl_off_t wire;          /* bytes the part puts on the wire: size, or its base64 length */
	int base64;
} body_part;

/* The registry key (its address: a constant) of the table that keeps the Lua strings of
 * data parts alive while their transfer runs: one table per engine (keyed by the engine, a
 * light userdata), mapping a transfer's id to the checked body_parts holding its strings. */
static const char anchors_key = 0;

/* Where the response body goes when `output` was given: decided at its first byte. */
enum { SINK_UNDECIDED = -1, SINK_MEMORY = 0, SINK_FILE = 1 };

struct engine;

typedef struct xfer {
	struct xfer *next_done;   /* link in the engine's queue of finished, unreported transfers */
	struct xfer *next_arrived; /* link in the engine's queue of stream transfers with news */
	struct engine *eng;       /* the owner, for on_write to queue an arrival notice */
	int stream;               /* stream = true: bytes are taken while they arrive */
	int skip_repeats;         /* drop a chunk that repeats the last one, whole events both */
	vidu_buf last;            /* skip_repeats: the last chunk kept (up to REPEAT_MAX bytes) */
	int last_whole;           /* it began and ended where events end: whole events only */
	int mid_event;            /* skip_repeats: the bytes so far end inside an event */
	curl_off_t repeats;       /* skip_repeats: chunks dropped */
	vidu_elide el;            /* elide_data_uris: the cutter the body goes through (min > 0) */
	int arrived;              /* 1 while queued for an arrival notice */
	int announced;            /* 1 once a notice carried the headers */
	CURL *easy;               /* NULL when the transfer failed before libcurl saw it */
	lua_Integer id;
	int running;              /* 1 while the easy handle is in the multi handle */
	int done;                 /* 1 once finished (or canceled), until reported */
	CURLcode code;            /* libcurl's result, valid once done */
	int fail;                 /* FAIL_* */
	int stalled;              /* the CURLE_OPERATION_TIMEDOUT was stall_timeout's */
	int fail_errno;           /* errno of a FAIL_FILE; -1: the file ended early */
	const char *fail_note;    /* a FAIL_FILE's reason when it is not an errno ("is a FIFO") */
	const char *fail_what;    /* what a FAIL_FILE was doing: "open", "write", ... */
	const char *fail_path;    /* and on which file (x->in_path or x->out_path) */
	struct curl_slist *headers;
	char *in_path;            /* body_file=..., for error messages */
	FILE *in;                 /* body_file, read by on_read */
	curl_off_t in_size;       /* its size when opened: the Content-Length sent */
	curl_off_t in_read;       /* bytes read since the last rewind */
	body_part *parts;         /* body_parts=..., sent in order by on_read_parts */
	int anchored;             /* its data parts' strings are in the anchors table */
	size_t nparts;
	size_t part_at;           /* the part being sent (nparts: all sent) */
	curl_off_t part_pos;      /* wire bytes of that part sent since the last rewind */
	curl_off_t file_pos;      /* bytes of that part's file read since the last rewind */
	curl_off_t parts_size;    /* the Content-Length: every part's wire bytes */
	char carry[4];            /* an encoded group libcurl's buffer had no room for */
	int carry_len, carry_at;  /* its length (0: none) and how much of it was sent */
	char note[96];            /* a FAIL_FILE reason formatted for this transfer */
	char *out_path;           /* output=..., opened lazily by on_write for a 2xx response */
	FILE *out;
	int sink;                 /* SINK_*; SINK_MEMORY when no output was given */
	vidu_buf body;            /* the response body when it is kept in memory */
	vidu_buf head;            /* raw header lines of the latest response */
	curl_off_t max_response;
	curl_off_t received;      /* body bytes of the final response */
	long stall_s;             /* stall_timeout in whole seconds, 0 = none */
	long timeout_ms;          /* total timeout, 0 = none */
	double started;           /* monotonic seconds at request(): tells a stall from timeout */
	curl_off_t dlnow, dltotal, ulnow, ultotal;
	char errbuf[CURL_ERROR_SIZE];
} xfer;

/* One socket wish of libcurl's (CURLMOPT_SOCKETFUNCTION): the socket and CURL_POLL_*. */
typedef struct sock_wish {
	curl_socket_t fd;
	int what;
} sock_wish;

typedef struct engine {
	CURLM *multi;             /* NULL once closed: the safe state a new userdata starts in */
	xfer **xs;                /* transfers not yet reported, sorted by id (ids only grow) */
	size_t n, cap;
	xfer *done_head, *done_tail;
	xfer *arr_head, *arr_tail; /* stream transfers that received bytes since the last report */
	lua_Integer next_id;
	char *user_agent;
	/* Host-driven sockets (engine:watch()). on_socket and on_timer only write these plain
	 * arrays and fields; engine:sockets() and engine:timeout() hand them to Lua later. */
	int watched;              /* 1 once watch() was called: socket_action drives libcurl */
	int wish_nomem;           /* on_socket could not record a wish: sockets() raises */
	int timer_called;         /* on_timer ran during the current socket_action */
	double timer_at;          /* when libcurl wants socket_action() (timeout), or < 0: never */
	sock_wish *changes;       /* wishes in the order libcurl made them, until sockets() */
	size_t nchanges, capchanges;
	sock_wish *socks;         /* the current wish per socket, for wait()'s own wait */
	size_t nsocks, capsocks;
	struct pollfd *pfds;      /* wait()'s poll set, reused */
	size_t cappfds;
	/* Linux: wait()'s own epoll set, made by the first wait() that polls and kept in step with
	 * socks by on_socket, so a wake costs what is ready, not what is open; -1 without one
	 * (not made yet, or given up after a failed epoll_ctl: poll() over socks then). */
	int epfd;
	int ep_failed;
	double driven;            /* monotonic seconds of the last perform (wait's settle_ms) */
	/* PART_CHUNK bytes of file on their way to the base64 encoder: made by the first request
	 * with a base64 file part, shared by all (a read callback encodes what it reads before it
	 * returns, and callbacks never run at the same time). */
	unsigned char *chunk;
} engine;

/* Request options, read and checked before anything is allocated. Strings point into Lua
 * values kept alive on the stack for the duration of request(). */
typedef struct req {
	const char *method, *url, *body, *body_file, *output, *ca_file, *ca_path;
	size_t body_len;
	int parts;                /* stack index of the checked body_parts (see read_parts), or 0 */
	int nparts;
	int data_parts;           /* how many of them are data parts (Lua strings, anchored) */
	long connect_ms, timeout_ms, max_redirects, stall_s;
	curl_off_t max_response;
	int follow;
	int stream;               /* body taken while it arrives (engine:take) */
	int skip_repeats;         /* stream: drop repeated whole-event chunks */
	size_t elide;             /* elide_data_uris, 0 = off */
	int fresh;                /* CURLOPT_FRESH_CONNECT: never ride a pooled connection */
	int lines;                /* stack index of a table of ready "Name: value" header lines */
	int nlines;
} req;

/* ---------------------------------------------------------------- transfers (no Lua) */

/* Closes the files of a body_parts transfer: all it needs to send. */
static void parts_close(xfer *x)
{
	size_t i;
	for (i = 0; i < x->nparts; i++) {
		if (x->parts[i].f != NULL)
			fclose(x->parts[i].f);
		x->parts[i].f = NULL;
	}
}

/* Frees the parts themselves (parts_close first). */
static void parts_free(xfer *x)
{
	size_t i;
	parts_close(x);
	for (i = 0; i < x->nparts; i++) {
		free(x->parts[i].data);
		free(x->parts[i].path);
	}
	free(x->parts);
	x->parts = NULL;
	x->nparts = 0;
}

/* Releases everything a transfer owns. The caller has already taken it out of the multi
 * handle, so libcurl holds no pointer into it any more. */
static void xfer_free(xfer *x)
{
	if (x->easy != NULL)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->headers);
	if (x->in != NULL)
		fclose(x->in);
	if (x->out != NULL)
		fclose(x->out);
	free(x->out_path);
	free(x->in_path);
	parts_free(x);
	vidu_buf_free(&x->body);
	vidu_buf_free(&x->head);
	vidu_buf_free(&x->last);
	free(x);
}

/* Records a file failure once: the first cause is the one worth reporting. */
static void xfer_file_fail(xfer *x, const char *what, const char *path, int err)
{
	if (x->fail != FAIL_NONE)
		return;
	x->fail = FAIL_FILE;
	x->fail_what = what;
	x->fail_path = path;
	x->fail_errno = err;
}

/* Records a file failure whose reason is a phrase, not an errno ("is a FIFO"). */
static void xfer_file_refuse(xfer *x, const char *what, const char *path, const char *note)
{
	if (x->fail != FAIL_NONE)
		return;
	xfer_file_fail(x, what, path, 0);
	x->fail_note = note;
}

/* Opens the output for writing without ever blocking (O_NONBLOCK: a FIFO without a reader
 * fails at once instead of hanging the engine) and keeps it only if it is a regular file:
 * what request() checked may have been replaced since. NULL on failure, recorded in x. */
static FILE *open_output(xfer *x)
{
	struct stat st;
	FILE *f;
	int fd = open(x->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
		0666);
	if (fd < 0) {
		xfer_file_fail(x, "open output", x->out_path, errno);
		return NULL;
	}
	if (fstat(fd, &st) != 0) {
		int err = errno;
		close(fd);
		xfer_file_fail(x, "open output", x->out_path, err);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		xfer_file_refuse(x, "open output", x->out_path, "not a regular file");
		return NULL;
	}
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	f = fdopen(fd, "wb");
	if (f == NULL) {
		xfer_file_fail(x, "open output", x->out_path, errno);
		close(fd);
	}
	return f;
}

/* Decides at the first body byte where the body goes: a 2xx body with `output` goes to the
 * file; anything else (an error page) stays in memory so the caller can read why. Opening
 * lazily also means a failed request never truncates an existing file. */
static int xfer_pick_sink(xfer *x)
{
	long status = 0;
	if (x->out_path == NULL) {
		x->sink = SINK_MEMORY;
		return 0;
	}
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		x->sink = SINK_MEMORY;
		return 0;
	}
	x->out = open_output(x);
	if (x->out == NULL)
		return -1;
	x->sink = SINK_FILE;
	return 0;
}

static void engine_push_arrived(struct engine *e, xfer *x);

/* skip_repeats keeps the last chunk up to this size: a longer one is never compared. */
#define REPEAT_MAX 16384

/* True when a chunk ends where a server-sent event ends (a blank line): the next byte
 * starts a new event. A blank line split across chunks is not seen: that only costs a
 * repeat not dropped. */
static int ends_event(const char *p, size_t len)
{
	return (len >= 2 && p[len - 1] == '\n' && p[len - 2] == '\n') ||
		(len >= 4 && memcmp(p + len - 4, "\r\n\r\n", 4) == 0);
}

/* The write callback of a stream transfer: appends to the buffer that engine:take empties,
 * under max_response for the bytes waiting, and queues an arrival notice. No Lua here.
 * With skip_repeats, a chunk that is the very bytes of the last one, both whole events (a
 * status stream sending the same status again while nothing changes), is counted and
 * dropped here: no notice, no take, no Lua woken for it. */
static size_t on_stream_write(xfer *x, char *p, size_t len)
{
	if (x->skip_repeats) {
		/* The last chunk held whole events (it began where one ended and ended so), and
		 * this one is the same bytes: it begins where that one ended, so it holds the same
		 * whole events again. A chunk that began mid-event is never a model: read from an
		 * event's start, the same bytes may mean other events. */
		int began_whole = !x->mid_event;
		if (x->last_whole && len == x->last.len && memcmp(p, x->last.data, len) == 0) {
			x->received += (curl_off_t)len;
			x->repeats++;
			return len;
		}
		x->mid_event = !ends_event(p, len);
		x->last.len = 0;
		x->last_whole = 0;
		if (len > 0 && len <= REPEAT_MAX && vidu_buf_append(&x->last, p, len) == 0)
			x->last_whole = began_whole && !x->mid_event;
	}
	if ((curl_off_t)len > x->max_response - (curl_off_t)x->body.len) {
		if (x->fail == FAIL_NONE)
			x->fail = FAIL_TOO_LARGE;
		return 0;
	}
	if (vidu_buf_append(&x->body, p, len) != 0) {
		if (x->fail == FAIL_NONE)
			x->fail = FAIL_NOMEM;
		return 0;
	}
	x->received += (curl_off_t)len;
	if (!x->arrived)
		engine_push_arrived(x->eng, x);
	return len;
}

/* CURLOPT_WRITEFUNCTION: stores body bytes under the cap; returning short aborts the
 * transfer with CURLE_WRITE_ERROR, which the fail flag then explains. */
static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
	xfer *x = (xfer *)ud;
	size_t len = size * nmemb;
	if (x->stream)
		return on_stream_write(x, p, len);
	if ((curl_off_t)len > x->max_response - x->received) {
		if (x->fail == FAIL_NONE)
			x->fail = FAIL_TOO_LARGE;
		return 0;
	}
	if (x->sink == SINK_UNDECIDED && xfer_pick_sink(x) != 0)
		return 0;
	if (x->sink == SINK_MEMORY && x->out_path != NULL &&
		(curl_off_t)len > ERROR_BODY_CAP - x->received) {
		if (x->fail == FAIL_NONE)
			x->fail = FAIL_ERROR_BODY;
		return 0;
	}
	if (x->sink == SINK_FILE) {
		if (fwrite(p, 1, len, x->out) != len) {
			xfer_file_fail(x, "write output", x->out_path, errno);
			return 0;
		}
	} else if (x->el.min > 0) {
		/* No presize: the buffer holds only what the cutter keeps. */
		if (vidu_elide_feed(&x->el, &x->body, p, len) != 0) {
			if (x->fail == FAIL_NONE)
				x->fail = FAIL_NOMEM;
			return 0;
		}
	} else {
		if (x->body.len == 0 && x->body.cap == 0) {
			/* Size the buffer from Content-Length once, so a large body is not copied
			 * by repeated doubling; the cap bounds what a lying header can cost. */
			curl_off_t cl = -1;
			curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
			if (cl > 0 && cl <= x->max_response && cl <= PRESIZE_MAX &&
				(curl_off_t)(size_t)cl == cl)
				(void)vidu_buf_reserve(&x->body, (size_t)cl);
		}
		if (vidu_buf_append(&x->body, p, len) != 0) {
			if (x->fail == FAIL_NONE)
				x->fail = FAIL_NOMEM;
			return 0;
		}
	}
	x->received += (curl_off_t)len;
	return len;
}

/* CURLOPT_HEADERFUNCTION: keeps the raw header lines of the latest response only. A status
 * line starts a new response (a 1xx, a followed redirect), so it drops what came before. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
	xfer *x = (xfer *)ud;
	size_t len = size * nmemb;
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		x->head.len = 0;
		if (x->sink != SINK_FILE) {
			x->body.len = 0;
			x->received = 0;
			x->sink = SINK_UNDECIDED;
			if (x->el.min > 0)
				vidu_elide_init(&x->el, x->el.min); /* a new answer: a new text */
		}
		return len;
	}
	if (len == 0 || p[0] == '\r' || p[0] == '\n')
		return len;
	if (x->head.len + len > MAX_HEADER_BYTES) {
		if (x->fail == FAIL_NONE)
			x->fail = FAIL_HEADERS;
		return 0;
	}
	if (vidu_buf_append(&x->head, p, len) != 0) {
		if (x->fail == FAIL_NONE)
			x->fail = FAIL_NOMEM;
		return 0;
	}
	return len;
}

/* CURLOPT_SOCKOPTFUNCTION: every socket libcurl opens is close-on-exec (libcurl 7.88 leaves
 * them inheritable). Without it a child the process starts (ffmpeg, io.popen, a test server)
 * inherits our connections and keeps them open after we close them, so their peers never see
 * the close (seen: a spec's test server holding a dead emulator's sockets in CLOSE-WAIT). The
 * engine is used from one thread: no fork falls between socket() and this call. */
static int on_sockopt(void *ud, curl_socket_t fd, curlsocktype purpose)
{
	int flags;
	(void)ud;
	(void)purpose;
	flags = fcntl(fd, F_GETFD);
	if (flags != -1)
		(void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
	return CURL_SOCKOPT_OK;
}

/* CURLOPT_READFUNCTION: streams body_file. A read error, or a file that shrank since it was
 * opened, aborts: a short body under a Content-Length that promised more would only leave
 * the server waiting for the rest. */
static size_t on_read(char *p, size_t size, size_t nmemb, void *ud)
{
	xfer *x = (xfer *)ud;
	size_t want = size * nmemb, got;
	if ((curl_off_t)want > x->in_size - x->in_read)
		want = (size_t)(x->in_size - x->in_read); /* a file that grew: send what was promised */
	if (want == 0)
		return 0;
	got = fread(p, 1, want, x->in);
	if (got == 0) {
		xfer_file_fail(x, "read body_file", x->in_path, ferror(x->in) ? errno : -1);
		return CURL_READFUNC_ABORT;
	}
	x->in_read += (curl_off_t)got;
	return got;
}

/* CURLOPT_SEEKFUNCTION: lets libcurl rewind body_file to resend it (a 307/308 redirect, or
 * a reused connection that turned out to be closed). */
static int on_seek(void *ud, curl_off_t offset, int origin)
{
	xfer *x = (xfer *)ud;
	if ((curl_off_t)(off_t)offset != offset)
		return CURL_SEEKFUNC_CANTSEEK;
	clearerr(x->in);
	if (origin != SEEK_SET || fseeko(x->in, (off_t)offset, SEEK_SET) != 0)
		return CURL_SEEKFUNC_FAIL;
	x->in_read = offset;
	return CURL_SEEKFUNC_OK;
}

/* Records that a part's file no longer has the size the Content-Length was made from. */
static void parts_changed(xfer *x, const body_part *pt)
{
	snprintf(x->note, sizeof(x->note), "the file changed size while being sent (%"
		CURL_FORMAT_CURL_OFF_T " bytes expected)", pt->size);
	xfer_file_refuse(x, "read body part", pt->path, x->note);
}

/* Reads want bytes of the current file part into buf, all or nothing: fewer means the file
 * shrank (or a read error), which fails the transfer. Returns 0, or -1 once failed. */
static int parts_read_file(xfer *x, body_part *pt, unsigned char *buf, size_t want)
{
	size_t got = vidu_read_full(pt->f, buf, want);
	if (got < want) {
		if (ferror(pt->f))
			xfer_file_fail(x, "read body part", pt->path, errno ? errno : EIO);
		else
			parts_changed(x, pt);
		return -1;
	}
	x->file_pos += (curl_off_t)want;
	return 0;
}

/* Moves to the next part once the current one is sent; a file must end where its size
 * said, else it grew while being sent. Returns 0, or -1 once failed. */
static int parts_next(xfer *x, body_part *pt)
{
	if (pt->f != NULL) {
		int c = fgetc(pt->f);
		if (c != EOF || ferror(pt->f)) {
			if (c == EOF)
				xfer_file_fail(x, "read body part", pt->path, errno ? errno : EIO);
			else
				parts_changed(x, pt);
			return -1;
		}
	}
	x->part_at++;
	x->part_pos = 0;
	x->file_pos = 0;
	x->carry_len = x->carry_at = 0;
	return 0;
}

/* CURLOPT_READFUNCTION of body_parts: fills p with the next bytes of the parts in order.
 * A base64 part is encoded straight into p, whole groups of 4 characters at a time from at
 * most PART_CHUNK file bytes; when p has room for less than one group, the group is made in
 * x->carry and handed out over the next calls. No Lua, and no allocation. */
static size_t on_read_parts(char *p, size_t size, size_t nmemb, void *ud)
{
	xfer *x = (xfer *)ud;
	size_t room = size * nmemb, n = 0;
	while (n < room && x->part_at < x->nparts) {
		body_part *pt = &x->parts[x->part_at];
		size_t left = room - n;
		if (x->part_pos == pt->wire) {
			if (parts_next(x, pt) != 0)
				return CURL_READFUNC_ABORT;
			continue;
		}
		if (pt->data != NULL || (pt->mem != NULL && !pt->base64)) {
			curl_off_t rest = pt->wire - x->part_pos;
			size_t k = (curl_off_t)left < rest ? left : (size_t)rest;
			memcpy(p + n, (pt->data != NULL ? pt->data : pt->mem) + x->part_pos, k);
			n += k;
			x->part_pos += (curl_off_t)k;
		} else if (!pt->base64) {
			curl_off_t rest = pt->size - x->file_pos;
			size_t k = (curl_off_t)left < rest ? left : (size_t)rest;
			if (parts_read_file(x, pt, (unsigned char *)p + n, k) != 0)
				return CURL_READFUNC_ABORT;
			n += k;
			x->part_pos += (curl_off_t)k;
		} else if (x->carry_at < x->carry_len) {
			size_t k = (size_t)(x->carry_len - x->carry_at);
			if (k > left)
				k = left;
			memcpy(p + n, x->carry + x->carry_at, k);
			x->carry_at += (int)k;
			n += k;
			x->part_pos += (curl_off_t)k;
		} else {
			curl_off_t rest = pt->size - x->file_pos;
			size_t in = left / 4 * 3, out;
			const unsigned char *src;
			if (rest <= 0) { /* cannot happen: every byte read is encoded and sent */
				parts_changed(x, pt);
				return CURL_READFUNC_ABORT;
			}
			if (in == 0)
				in = 3; /* room for less than a group: it goes through carry */
			if (in > PART_CHUNK)
				in = PART_CHUNK;
			if ((curl_off_t)in > rest)
				in = (size_t)rest; /* the last, possibly partial, group */
			if (pt->mem != NULL) { /* a data part: encoded from the string itself */
				src = (const unsigned char *)pt->mem + x->file_pos;
				x->file_pos += (curl_off_t)in;
			} else {
				if (parts_read_file(x, pt, x->eng->chunk, in) != 0)
					return CURL_READFUNC_ABORT;
				src = x->eng->chunk;
			}
			out = vidu_b64_encoded_len(in);
			if (out <= left) {
				vidu_b64_encode(src, in, p + n);
				n += out;
				x->part_pos += (curl_off_t)out;
			} else {
				vidu_b64_encode(src, in, x->carry);
				x->carry_len = (int)out;
				x->carry_at = 0;
			}
		}
	}
	/* Move past every part already sent now, not at the next call: libcurl makes no call
	 * after the last byte it was promised, and a file that grew must still be noticed. */
	while (x->part_at < x->nparts && x->part_pos == x->parts[x->part_at].wire)
		if (parts_next(x, &x->parts[x->part_at]) != 0)
			return CURL_READFUNC_ABORT;
	return n;
}

/* CURLOPT_SEEKFUNCTION of body_parts: a rewind to the start (what libcurl asks for on a
 * 307/308 redirect or an auth round) starts every part again. Other offsets are not
 * supported; libcurl then reads its way forward if it can. */
static int on_seek_parts(void *ud, curl_off_t offset, int origin)
{
	xfer *x = (xfer *)ud;
	size_t i;
	if (origin != SEEK_SET || offset != 0)
		return CURL_SEEKFUNC_CANTSEEK;
	for (i = 0; i < x->nparts; i++) {
		FILE *f = x->parts[i].f;
		if (f == NULL)
			continue;
		clearerr(f);
		if (fseeko(f, 0, SEEK_SET) != 0) {
			xfer_file_fail(x, "rewind body part", x->parts[i].path, errno);
			return CURL_SEEKFUNC_FAIL;
		}
	}
	x->part_at = 0;
	x->part_pos = 0;
	x->file_pos = 0;
	x->carry_len = x->carry_at = 0;
	return CURL_SEEKFUNC_OK;
}

/* CURLOPT_XFERINFOFUNCTION: only copies the counters, which engine:progress(id) reads. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
	curl_off_t ulnow)
{
	xfer *x = (xfer *)ud;
	x->dltotal = dltotal;
	x->dlnow = dlnow;
	x->ultotal = ultotal;
	x->ulnow = ulnow;
	return 0;
}

/* ---------------------------------------------------------------- the engine's books */

/* Finds a transfer by id; ids are handed out in increasing order, so the array is sorted. */
static size_t engine_find(const engine *e, lua_Integer id, int *found)
{
	size_t lo = 0, hi = e->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (e->xs[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < e->n && e->xs[lo]->id == id;
	return lo;
}

/* Forgets a transfer (it has been reported); the memory is the caller's to free. */
static void engine_forget(engine *e, xfer *x)
{
	int found;
	size_t i = engine_find(e, x->id, &found);
	if (!found)
		return;
	memmove(e->xs + i, e->xs + i + 1, (e->n - i - 1) * sizeof(*e->xs));
	e->n--;
}

/* Queues a transfer whose result step() will report, in the order they finished. */
static void engine_push_done(engine *e, xfer *x)
{
	x->done = 1;
	x->next_done = NULL;
	if (e->done_tail != NULL)
		e->done_tail->next_done = x;
	else
		e->done_head = x;
	e->done_tail = x;
}

/* Queues a stream transfer for an arrival notice (once until the next report). */
static void engine_push_arrived(engine *e, xfer *x)
{
	x->arrived = 1;
	x->next_arrived = NULL;
	if (e->arr_tail != NULL)
		e->arr_tail->next_arrived = x;
	else
		e->arr_head = x;
	e->arr_tail = x;
}

/* Case-insensitive ASCII equality (header names, URL schemes). */
static int equal_ci(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++)
		if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
			return 0;
	return *a == *b;
}

/* Seconds on the monotonic clock (core.now's clock). */
static double mono_now(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return 0;
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Whether a CURLE_OPERATION_TIMEDOUT came from the low-speed check of stall_timeout: libcurl
 * reports it with the same code as the connect and total timeouts. The low-speed check only
 * runs once the request is out (a connect or TLS timeout comes before any request byte), and
 * the total timeout only fires once its time has passed since request(), which was before
 * libcurl's own start. */
static int is_stall(const xfer *x)
{
	long request_size = 0;
	if (x->stall_s <= 0 || x->easy == NULL)
		return 0;
	if (x->timeout_ms > 0 && (mono_now() - x->started) * 1000 >= (double)x->timeout_ms)
		return 0;
	curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &request_size);
	return request_size > 0 || x->ulnow > 0 || x->received > 0;
}

/* Takes a transfer out of libcurl's hands and settles its files: the output must be flushed
 * and closed before the caller is told the download is complete. */
static void engine_finish(engine *e, xfer *x, CURLcode code)
{
	if (x->running) {
		curl_multi_remove_handle(e->multi, x->easy);
		x->running = 0;
	}
	x->code = code;
	x->stalled = code == CURLE_OPERATION_TIMEDOUT && is_stall(x);
	if (x->in != NULL) {
		fclose(x->in);
		x->in = NULL;
	}
	parts_close(x);
	if (code == CURLE_OK && x->fail == FAIL_NONE && x->sink == SINK_UNDECIDED &&
		x->out_path != NULL) {
		/* A 2xx with an empty body still owes the caller its (empty) file. */
		(void)xfer_pick_sink(x);
	}
	if (x->out != NULL) {
		int bad = fclose(x->out) != 0;
		x->out = NULL;
		if (bad)
			xfer_file_fail(x, "write output", x->out_path, errno);
	}
	if (x->el.min > 0 && x->sink != SINK_FILE && vidu_elide_end(&x->el, &x->body) != 0 &&
		x->fail == FAIL_NONE)
		x->fail = FAIL_NOMEM;
	engine_push_done(e, x);
}

/* Moves every transfer libcurl reports finished to the done queue. */
static void engine_collect(engine *e)
{
	int left = 0;
	CURLMsg *m;
	while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
		CURL *easy;
		CURLcode code;
		char *priv = NULL;
		if (m->msg != CURLMSG_DONE)
			continue;
		/* The message dies with curl_multi_remove_handle: copy it out first. */
		easy = m->easy_handle;
		code = m->data.result;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
		if (priv != NULL)
			engine_finish(e, (xfer *)(void *)priv, code);
	}
}

static void watch_drive(engine *e, int wait_ms);

/* Drives libcurl without blocking and moves every finished transfer to the done queue. A
 * watched engine is driven through socket_action instead: with poll_sockets its recorded
 * sockets polled without waiting (so step() serves a watched engine nobody else drives), then
 * its timer if due; without, the timer only (a host watches the sockets and reports them). */
static void engine_perform(engine *e, int poll_sockets)
{
	int running = 0;
	if (e->watched) {
		watch_drive(e, poll_sockets ? 0 : -1);
		return;
	}
	curl_multi_perform(e->multi, &running);
	e->driven = mono_now();
	engine_collect(e);
}

/* Frees every transfer (running ones are aborted) and the multi handle: the closed state. */
static void engine_release(engine *e)
{
	size_t i;
	if (e->multi != NULL && e->watched) {
		/* No wish is recorded during the teardown: the arrays go with it. */
		curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, (curl_socket_callback)NULL);
		curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, (curl_multi_timer_callback)NULL);
	}
	for (i = 0; i < e->n; i++) {
		xfer *x = e->xs[i];
		if (x->running)
			curl_multi_remove_handle(e->multi, x->easy);
		x->running = 0;
		xfer_free(x);
	}
	free(e->xs);
	e->xs = NULL;
	e->n = e->cap = 0;
	e->done_head = e->done_tail = NULL;
	e->arr_head = e->arr_tail = NULL;
	if (e->multi != NULL)
		curl_multi_cleanup(e->multi);
	e->multi = NULL;
	free(e->user_agent);
	free(e->chunk);
	e->chunk = NULL;
	e->user_agent = NULL;
	free(e->changes);
	free(e->socks);
	free(e->pfds);
	if (e->epfd >= 0)
		close(e->epfd);
	e->epfd = -1;
	e->changes = e->socks = NULL;
	e->pfds = NULL;
	e->nchanges = e->capchanges = e->nsocks = e->capsocks = e->cappfds = 0;
}

/* ---------------------------------------------------------------- sockets a host watches
 *
 * engine:watch() hands libcurl's sockets to the host's own loop (luv poll handles, say):
 * libcurl says through CURLMOPT_SOCKETFUNCTION which socket it wants watched for what, and
 * through CURLMOPT_TIMERFUNCTION when it wants to be called even if no socket is ready. The
 * two callbacks below only record that in plain arrays and fields (and wait()'s epoll set,
 * once there is one), never calling Lua; the host reads them with engine:sockets() and
 * engine:timeout() after each call into the engine, and calls engine:socket_action(fd,
 * events) when a socket is ready or engine:socket_action() when the time has come. A watched
 * engine's step() and wait() go through socket_action too (both wait on the recorded sockets
 * themselves, step() without waiting; on Linux through an epoll set kept in step with the
 * wishes, so a wake costs what is ready rather than what is open), so a script can still
 * drive it without a host; the Lua scheduler watches its engine that way once it opens
 * streams, since libcurl's perform polls every transfer's socket each time and socket_action
 * only the ready ones.
 */

/* Grows a sock_wish array to hold one more; -1 when out of memory. */
static int wishes_reserve(sock_wish **a, size_t n, size_t *cap)
{
	sock_wish *p;
	size_t c;
	if (n < *cap)
		return 0;
	c = *cap ? *cap * 2 : 16;
	p = (sock_wish *)realloc(*a, c * sizeof(*p));
	if (p == NULL)
		return -1;
	*a = p;
	*cap = c;
	return 0;
}

#ifdef VIDU_EPOLL
/* Gives the epoll set up for good: wait() polls socks from then on (they are always kept). */
static void ep_drop(engine *e)
{
	if (e->epfd >= 0)
		close(e->epfd);
	e->epfd = -1;
	e->ep_failed = 1;
}

/* Mirrors one wish into the epoll set, if there is one. known: the socket was in socks, so
 * it is most likely in the set already (unless libcurl closed it unannounced and the number
 * came back: the kernel dropped the old one, and ENOENT says so). No Lua here. */
static void ep_wish(engine *e, curl_socket_t fd, int what, int known)
{
	struct epoll_event ev;
	int op = known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (e->epfd < 0)
		return;
	if (what == CURL_POLL_REMOVE) {
		/* Already closed, the kernel has dropped it: nothing to undo then. */
		(void)epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
		return;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	ev.data.fd = fd;
	if (epoll_ctl(e->epfd, op, fd, &ev) == 0)
		return;
	if (errno == ENOENT || errno == EEXIST) {
		op = errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
		if (epoll_ctl(e->epfd, op, fd, &ev) == 0)
			return;
	}
	ep_drop(e);
}

/* Makes the epoll set from the recorded sockets; on any failure, poll() it stays. */
static void ep_start(engine *e)
{
	size_t i;
	e->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (e->epfd < 0) {
		e->ep_failed = 1;
		return;
	}
	for (i = 0; i < e->nsocks && e->epfd >= 0; i++)
		ep_wish(e, e->socks[i].fd, e->socks[i].what, 0);
}
#endif

/* CURLMOPT_SOCKETFUNCTION: records the wish, in order for sockets() and as the socket's
 * current state for wait() (and its epoll set, if it has one). No Lua here. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp)
{
	engine *e = (engine *)ud;
	size_t i;
	(void)easy;
	(void)sockp;
	if (wishes_reserve(&e->changes, e->nchanges, &e->capchanges) != 0) {
		e->wish_nomem = 1;
		return -1;
	}
	e->changes[e->nchanges].fd = fd;
	e->changes[e->nchanges].what = what;
	e->nchanges++;
	for (i = 0; i < e->nsocks && e->socks[i].fd != fd; i++)
		;
#ifdef VIDU_EPOLL
	ep_wish(e, fd, what, i < e->nsocks);
#endif
	if (what == CURL_POLL_REMOVE) {
		if (i < e->nsocks)
			e->socks[i] = e->socks[--e->nsocks];
		return 0;
	}
	if (i == e->nsocks) {
		if (wishes_reserve(&e->socks, e->nsocks, &e->capsocks) != 0) {
			e->wish_nomem = 1;
			return -1;
		}
		e->socks[e->nsocks++].fd = fd;
	}
	e->socks[i].what = what;
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: records when libcurl wants socket_action() (timeout); -1 = never. */
static int on_timer(CURLM *multi, long timeout_ms, void *ud)
{
	engine *e = (engine *)ud;
	(void)multi;
	e->timer_called = 1;
	e->timer_at = timeout_ms < 0 ? -1 : mono_now() + (double)timeout_ms / 1000;
	return 0;
}

/* One curl_multi_socket_action: a ready socket, or CURL_SOCKET_TIMEOUT. After a timeout
 * action that did not move the timer, the timer is read back from libcurl: it does not call
 * on_timer again for an expiry it already announced, and one that fired a little early
 * (libcurl counts whole milliseconds) would otherwise be lost. */
static void watch_action(engine *e, curl_socket_t fd, int mask)
{
	int running = 0;
	e->timer_called = 0;
	curl_multi_socket_action(e->multi, fd, mask, &running);
	if (fd == CURL_SOCKET_TIMEOUT && !e->timer_called) {
		long ms = -1;
		curl_multi_timeout(e->multi, &ms);
		e->timer_at = ms < 0 ? -1 : mono_now() + (double)ms / 1000;
	}
	engine_collect(e);
}

/* Milliseconds until the recorded timer is due (0 when due), -1 without one. */
static long watch_timer_ms(const engine *e)
{
	double left;
	if (e->timer_at < 0)
		return -1;
	left = ceil((e->timer_at - mono_now()) * 1000);
	if (left <= 0)
		return 0;
	return left > (double)INT_MAX ? INT_MAX : (long)left;
}

#ifdef VIDU_EPOLL
/* watch_drive's wait through epoll: at most wait_ms, then socket_action on each ready one. */
static void ep_drive(engine *e, int wait_ms)
{
	struct epoll_event evs[64];
	int i, n = epoll_wait(e->epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), wait_ms);
	for (i = 0; i < n; i++) {
		uint32_t r = evs[i].events;
		int mask = ((r & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) ? CURL_CSELECT_IN : 0) |
			((r & EPOLLOUT) ? CURL_CSELECT_OUT : 0) | ((r & EPOLLERR) ? CURL_CSELECT_ERR : 0);
		if (mask != 0)
			watch_action(e, (curl_socket_t)evs[i].data.fd, mask);
	}
}
#endif

/* watch_drive's wait through poll() over every recorded socket: at most wait_ms. */
static void poll_drive(engine *e, int wait_ms)
{
	size_t i, n = 0;
	if (e->nsocks > e->cappfds) {
		struct pollfd *p = (struct pollfd *)realloc(e->pfds, e->nsocks * sizeof(*p));
		if (p != NULL) {
			e->pfds = p;
			e->cappfds = e->nsocks;
		}
	}
	/* Out of memory for the poll set: poll what fits; the timer still drives the rest. */
	for (i = 0; i < e->nsocks && i < e->cappfds; i++) {
		int w = e->socks[i].what;
		e->pfds[n].fd = (int)e->socks[i].fd;
		e->pfds[n].events = (short)(((w & CURL_POLL_IN) ? POLLIN : 0) |
			((w & CURL_POLL_OUT) ? POLLOUT : 0));
		e->pfds[n].revents = 0;
		n++;
	}
	if (poll(n > 0 ? e->pfds : NULL, (nfds_t)n, wait_ms) > 0) {
		for (i = 0; i < n; i++) {
			short r = e->pfds[i].revents;
			int mask = ((r & (POLLIN | POLLHUP)) ? CURL_CSELECT_IN : 0) |
				((r & POLLOUT) ? CURL_CSELECT_OUT : 0) |
				((r & (POLLERR | POLLNVAL)) ? CURL_CSELECT_ERR : 0);
			if (mask != 0)
				watch_action(e, (curl_socket_t)e->pfds[i].fd, mask);
		}
	}
}

/* Drives a watched engine without a host: waits for the recorded sockets at most wait_ms
 * (-1: not at all), acts on the ready ones, then on the timer if it is due. On Linux the
 * wait is an epoll set (a wake with 1,000 streams open costs what is ready); poll() where
 * there is none. */
static void watch_drive(engine *e, int wait_ms)
{
	if (wait_ms >= 0) {
		long t = watch_timer_ms(e);
		if (t >= 0 && t < wait_ms)
			wait_ms = (int)t;
#ifdef VIDU_EPOLL
		if (e->epfd < 0 && !e->ep_failed)
			ep_start(e);
		if (e->epfd >= 0)
			ep_drive(e, wait_ms);
		else
#endif
			poll_drive(e, wait_ms);
	}
	if (e->timer_at >= 0 && mono_now() >= e->timer_at)
		watch_action(e, CURL_SOCKET_TIMEOUT, 0);
	else
		engine_collect(e);
	e->driven = mono_now();
}

/* Switches an engine to host-driven sockets. Transfers already running were driven by
 * curl_multi_perform, which never reports sockets; curl_multi_socket_all is the one call
 * that walks them all and reports theirs (deprecated only because socket_action does the
 * rest better; nothing else does this). */
static void watch_start(engine *e)
{
	long ms = -1;
	curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, (void *)e);
	curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, (void *)e);
	e->watched = 1;
	e->timer_at = -1;
	if (e->n > 0) {
		int running = 0;
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
		curl_multi_socket_all(e->multi, &running);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
		engine_collect(e);
	}
	curl_multi_timeout(e->multi, &ms);
	e->timer_at = ms < 0 ? -1 : mono_now() + (double)ms / 1000;
}

/* ---------------------------------------------------------------- Lua helpers */

/* luaL_checkudata plus the liolib rule: a closed engine is an error, not a crash. */
static engine *check_engine(lua_State *L)
{
	engine *e = (engine *)luaL_checkudata(L, 1, ENGINE_MT);
	if (e->multi == NULL)
		luaL_error(L, "attempt to use a closed engine");
	return e;
}

/* Raises on option names the function does not know: a typo must not pass silently. */
static void check_keys(lua_State *L, int t, const char *const keys[], const char *what)
{
	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		const char *k;
		int i;
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "%s: option names must be strings", what);
		k = lua_tostring(L, -2);
		for (i = 0; keys[i] != NULL && strcmp(keys[i], k) != 0; i++)
			;
		if (keys[i] == NULL)
			luaL_error(L, "%s: unknown option '%s'", what, k);
		lua_pop(L, 1);
	}
}

/* An optional string field; the value stays on the stack so the pointer stays valid. */
static const char *opt_string(lua_State *L, int t, const char *k, const char *def, size_t *len)
{
	lua_getfield(L, t, k);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		if (len != NULL)
			*len = def != NULL ? strlen(def) : 0;
		return def;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "%s must be a string (got %s)", k, luaL_typename(L, -1));
	return lua_tolstring(L, -1, len);
}

/* An optional file path field: a non-empty string without NUL (a C string). */
static const char *opt_path(lua_State *L, int t, const char *k)
{
	size_t len;
	const char *v = opt_string(L, t, k, NULL, &len);
	if (v != NULL && (len == 0 || strlen(v) != len))
		luaL_error(L, "%s must be a non-empty path without NUL bytes", k);
	return v;
}

/* An optional non-negative finite number field (floats are fine: 2.5 seconds). */
static lua_Number opt_number(lua_State *L, int t, const char *k, lua_Number def)
{
	lua_Number v;
	lua_getfield(L, t, k);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return def;
	}
	if (lua_type(L, -1) != LUA_TNUMBER)
		luaL_error(L, "%s must be a number (got %s)", k, luaL_typename(L, -1));
	v = lua_tonumber(L, -1);
	lua_pop(L, 1);
	if (!(v >= 0) || v > 1e15)
		luaL_error(L, "%s must be a non-negative number", k);
	return v;
}

/* An optional non-negative whole-number field; 3.0 is accepted, 3.5 is not. */
static lua_Number opt_count(lua_State *L, int t, const char *k, lua_Number def)
{
	lua_Number v = opt_number(L, t, k, def);
	if (v != floor(v))
		luaL_error(L, "%s must be a whole number", k);
	return v;
}

/* A whole-number option as a long, clamped (options are bounded by opt_number already;
 * this only matters where long is 32 bits). */
static long to_long(lua_Number v)
{
	return v > (lua_Number)LONG_MAX ? LONG_MAX : (long)v;
}

/* Seconds (float) to libcurl's milliseconds, rounding so that 0.0005 s is not 0 = "none". */
static long seconds_to_ms(lua_Number s)
{
	lua_Number ms = ceil(s * 1000);
	return ms > (lua_Number)LONG_MAX ? LONG_MAX : (long)ms;
}

/* An optional boolean field. */
static int opt_bool(lua_State *L, int t, const char *k, int def)
{
	int v;
	lua_getfield(L, t, k);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return def;
	}
	if (lua_type(L, -1) != LUA_TBOOLEAN)
		luaL_error(L, "%s must be a boolean (got %s)", k, luaL_typename(L, -1));
	v = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return v;
}

/* Case-insensitive ASCII prefix test (URL schemes, header names). */
static int has_prefix_ci(const char *s, const char *prefix)
{
	for (; *prefix != '\0'; s++, prefix++)
		if (tolower((unsigned char)*s) != *prefix)
			return 0;
	return 1;
}

/* RFC 9110 token characters: what a header name or a method may consist of. */
static int is_token(const char *s, size_t len)
{
	size_t i;
	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL) || c == '\0')
			return 0;
	}
	return 1;
}

/* Turns the headers table into a table of "Name: value" lines (Lua strings, so nothing
 * leaks if this raises), adding the defaults libcurl would otherwise get wrong for us:
 * no "Expect: 100-continue" pause, and no invented form Content-Type for a raw body. */
static void build_header_lines(lua_State *L, int t, int has_body, req *r)
{
	int has_ct = 0, has_expect = 0, n = 0;
	lua_newtable(L);
	r->lines = lua_gettop(L);
	if (t != 0) {
		lua_pushnil(L);
		while (lua_next(L, t) != 0) {
			size_t nlen, vlen, i;
			const char *name, *value;
			if (lua_type(L, -2) != LUA_TSTRING)
				luaL_error(L, "header names must be strings");
			name = lua_tolstring(L, -2, &nlen);
			if (!is_token(name, nlen))
				luaL_error(L, "invalid header name '%s'", name);
			if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
				luaL_error(L, "header '%s' must be a string (got %s)", name,
					luaL_typename(L, -1));
			lua_pushvalue(L, -1); /* convert a copy: lua_next needs the original */
			value = lua_tolstring(L, -1, &vlen);
			for (i = 0; i < vlen; i++)
				if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
					luaL_error(L, "header '%s' contains a line break or NUL", name);
			if (equal_ci(name, "content-type"))
				has_ct = 1;
			else if (equal_ci(name, "expect"))
				has_expect = 1;
			/* "Name;" is libcurl's way to send an empty value ("Name:" would delete it). */
			if (vlen == 0)
				lua_pushfstring(L, "%s;", name);
			else
				lua_pushfstring(L, "%s: %s", name, value);
			lua_rawseti(L, r->lines, ++n);
			lua_pop(L, 2);
		}
	}
	if (!has_expect) {
		lua_pushliteral(L, "Expect:");
		lua_rawseti(L, r->lines, ++n);
	}
	if (has_body && !has_ct) {
		lua_pushliteral(L, "Content-Type:");
		lua_rawseti(L, r->lines, ++n);
	}
	r->nlines = n;
}

/* ---------------------------------------------------------------- error reporting */

/* Maps a finished transfer to the contract's error kind; our own flags come first because
 * they explain libcurl's generic CURLE_WRITE_ERROR / CURLE_ABORTED_BY_CALLBACK. */
static const char *error_kind(const xfer *x)
{
	switch (x->fail) {
	case FAIL_TOO_LARGE: return "too_large";
	case FAIL_ERROR_BODY: return "too_large";
	case FAIL_HEADERS: return "too_large";
	case FAIL_FILE: return "file";
	case FAIL_CANCELED: return "canceled";
	case FAIL_NOMEM: return "other";
	default: break;
	}
	switch (x->code) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return "resolve";
	case CURLE_COULDNT_CONNECT:
		return "connect";
	case CURLE_OPERATION_TIMEDOUT:
		return x->stalled ? "stalled" : "timeout";
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2_STREAM:
	case CURLE_SEND_FAIL_REWIND:
		return "reset";
	case CURLE_FILESIZE_EXCEEDED:
		return "too_large";
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_TOO_MANY_REDIRECTS:
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_HTTP2:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_HTTP_RETURNED_ERROR:
	case CURLE_RANGE_ERROR:
		return "protocol";
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CLIENTCERT:
	case CURLE_USE_SSL_FAILED:
		return "tls";
	case CURLE_READ_ERROR:
	case CURLE_WRITE_ERROR:
		return "file";
	default:
		return "other";
	}
}

/* Could the server have seen (part of) the request? Only a "no" lets a POST be re-sent, so
 * in doubt the answer is yes. No: nothing was connected, or TLS never completed (curl sends
 * no early data). Yes: an earlier hop of a redirect was answered, request bytes were
 * written, or a connection stood ready for them. */
static int may_have_been_sent(const xfer *x, const char *kind)
{
	long redirects = 0, request_size = 0;
	curl_off_t connect_us = 0, tls_us = 0;
	char *scheme = NULL;
	if (x->easy == NULL)
		return 0;
	curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_COUNT, &redirects);
	curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &request_size);
	if (redirects > 0 || request_size > 0 || x->ulnow > 0)
		return 1;
	if (strcmp(kind, "resolve") == 0 || strcmp(kind, "connect") == 0 ||
		strcmp(kind, "tls") == 0)
		return 0;
	curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connect_us);
	if (connect_us == 0)
		return 0;
	curl_easy_getinfo(x->easy, CURLINFO_SCHEME, &scheme);
	curl_easy_getinfo(x->easy, CURLINFO_APPCONNECT_TIME_T, &tls_us);
	if (scheme != NULL && equal_ci(scheme, "https") && tls_us == 0)
		return 0;
	return 1;
}

/* The too_large message names the cap (formatted here: lua_pushfstring has no 64-bit
 * integer conversion before Lua 5.3). */
static void push_too_large(lua_State *L, const xfer *x)
{
	char msg[96];
	snprintf(msg, sizeof(msg), "response larger than max_response (%" CURL_FORMAT_CURL_OFF_T
		" bytes)", x->max_response);
	lua_pushstring(L, msg);
}

/* Pushes the human message for a failed transfer: ours, else curl's detailed buffer, else
 * curl's generic text. None of them ever contains request headers (so no API key). */
static void push_message(lua_State *L, const xfer *x)
{
	switch (x->fail) {
	case FAIL_TOO_LARGE:
		push_too_large(L, x);
		return;
	case FAIL_ERROR_BODY:
		lua_pushfstring(L, "error response to a download larger than %d bytes",
			(int)ERROR_BODY_CAP);
		return;
	case FAIL_HEADERS:
		lua_pushfstring(L, "response headers larger than %d bytes", MAX_HEADER_BYTES);
		return;
	case FAIL_FILE:
		lua_pushfstring(L, "cannot %s '%s': %s", x->fail_what,
			x->fail_path != NULL ? x->fail_path : "?",
			x->fail_note != NULL ? x->fail_note :
			x->fail_errno > 0 ? strerror(x->fail_errno) :
			x->fail_errno < 0 ? "the file ended early (changed while being sent)" :
			"unknown error");
		return;
	case FAIL_CANCELED:
		lua_pushliteral(L, "transfer canceled");
		return;
	case FAIL_NOMEM:
		lua_pushliteral(L, "not enough memory");
		return;
	default:
		break;
	}
	if (x->code == CURLE_FILESIZE_EXCEEDED) {
		push_too_large(L, x);
		return;
	}
	if (x->code == CURLE_OPERATION_TIMEDOUT && x->stalled) {
		char msg[128];
		snprintf(msg, sizeof(msg), "transfer stalled: less than 1 byte per second for %ld s "
			"(stall_timeout) after %" CURL_FORMAT_CURL_OFF_T " body bytes", x->stall_s,
			x->received);
		lua_pushstring(L, msg);
		return;
	}
	if (x->errbuf[0] != '\0')
		lua_pushstring(L, x->errbuf);
	else
		lua_pushstring(L, curl_easy_strerror(x->code));
}

/* Sets t[k] = the number, or its integer form when whole (so 2 prints as 2, not 2.0). */
static void set_number(lua_State *L, const char *k, lua_Number v)
{
	if (v == floor(v) && fabs(v) < 9007199254740992.0)
		lua_pushinteger(L, (lua_Integer)v);
	else
		lua_pushnumber(L, v);
	lua_setfield(L, -2, k);
}

/* Pushes the headers of the final response as a table: lower-case names, values trimmed,
 * repeated names joined with ", ", obsolete folded lines appended to the previous value. */
static void push_headers(lua_State *L, const vidu_buf *h)
{
	size_t i = 0;
	int last = 0; /* stack index of the previous header's name, 0 before the first */
	int tbl;
	lua_newtable(L);
	tbl = lua_gettop(L);
	while (i < h->len) {
		const char *line = h->data + i;
		const char *end = (const char *)memchr(line, '\n', h->len - i);
		const char *colon, *v, *ve;
		size_t linelen = end != NULL ? (size_t)(end - line) : h->len - i;
		i += linelen + (end != NULL ? 1 : 0);
		ve = line + linelen;
		while (ve > line && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (line[0] == ' ' || line[0] == '\t') {
			if (last == 0)
				continue;
			for (v = line; v < ve && (*v == ' ' || *v == '\t'); v++)
				;
			lua_pushvalue(L, last);
			lua_pushvalue(L, last);
			lua_rawget(L, tbl);
			lua_pushliteral(L, " ");
			lua_pushlstring(L, v, (size_t)(ve - v));
			lua_concat(L, 3);
			lua_rawset(L, tbl);
			continue;
		}
		colon = (const char *)memchr(line, ':', (size_t)(ve - line));
		if (colon == NULL || colon == line)
			continue;
		{
			luaL_Buffer b;
			const char *c;
			luaL_buffinit(L, &b);
			for (c = line; c < colon; c++)
				luaL_addchar(&b, (char)tolower((unsigned char)*c));
			luaL_pushresult(&b);
		}
		if (last != 0)
			lua_remove(L, last);
		last = lua_gettop(L);
		for (v = colon + 1; v < ve && (*v == ' ' || *v == '\t'); v++)
			;
		lua_pushvalue(L, last);
		lua_pushvalue(L, last);
		lua_rawget(L, tbl);
		if (lua_isnil(L, -1)) {
			lua_pop(L, 1);
			lua_pushlstring(L, v, (size_t)(ve - v));
		} else {
			lua_pushliteral(L, ", ");
			lua_pushlstring(L, v, (size_t)(ve - v));
			lua_concat(L, 3);
		}
		lua_rawset(L, tbl);
	}
	if (last != 0)
		lua_remove(L, last);
}

/* Pushes the result table of a finished transfer (see the contract). May raise on memory
 * only; the transfer is still the engine's then, so nothing leaks. */
static void push_result(lua_State *L, const xfer *x)
{
	int ok = x->code == CURLE_OK && x->fail == FAIL_NONE;
	long status = 0;
	lua_createtable(L, 0, 12);
	lua_pushinteger(L, x->id);
	lua_setfield(L, -2, "id");
	lua_pushboolean(L, ok);
	lua_setfield(L, -2, "ok");
	if (x->easy != NULL) {
		char *url = NULL;
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
		if (url != NULL) {
			lua_pushstring(L, url);
			lua_setfield(L, -2, "url");
		}
	}
	if (status > 0) {
		lua_pushinteger(L, (lua_Integer)status);
		lua_setfield(L, -2, "status");
		push_headers(L, &x->head);
		lua_setfield(L, -2, "headers");
	}
	set_number(L, "bytes", (lua_Number)x->received);
	if (x->skip_repeats)
		set_number(L, "repeats", (lua_Number)x->repeats);
	if (x->el.min > 0)
		set_number(L, "elided", (lua_Number)x->el.count);
	if (ok) {
		long version = 0, connects = 0;
		curl_off_t total = 0, connect = 0, start = 0;
		if (x->sink != SINK_FILE) {
			lua_pushlstring(L, x->body.data != NULL ? x->body.data : "", x->body.len);
			lua_setfield(L, -2, "body");
		}
		curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &version);
		switch (version) {
		case CURL_HTTP_VERSION_1_0: lua_pushnumber(L, 1.0); break;
		case CURL_HTTP_VERSION_1_1: lua_pushnumber(L, 1.1); break;
		case CURL_HTTP_VERSION_2_0: lua_pushinteger(L, 2); break;
#ifdef CURL_HTTP_VERSION_3
		case CURL_HTTP_VERSION_3: lua_pushinteger(L, 3); break;
#endif
		default: lua_pushnil(L); break;
		}
		lua_setfield(L, -2, "http_version");
		/* New connections this transfer opened: 0 when it reused one from the pool. */
		curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects);
		lua_pushinteger(L, (lua_Integer)connects);
		lua_setfield(L, -2, "connects");
		curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &total);
		curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connect);
		curl_easy_getinfo(x->easy, CURLINFO_STARTTRANSFER_TIME_T, &start);
		lua_createtable(L, 0, 3);
		lua_pushnumber(L, (lua_Number)total / 1e6);
		lua_setfield(L, -2, "total");
		lua_pushnumber(L, (lua_Number)connect / 1e6);
		lua_setfield(L, -2, "connect");
		lua_pushnumber(L, (lua_Number)start / 1e6);
		lua_setfield(L, -2, "start");
		lua_setfield(L, -2, "time");
	} else {
		const char *kind = error_kind(x);
		lua_pushstring(L, kind);
		lua_setfield(L, -2, "error");
		push_message(L, x);
		lua_setfield(L, -2, "message");
		lua_pushinteger(L, (lua_Integer)x->code);
		lua_setfield(L, -2, "curl_code");
		lua_pushboolean(L, may_have_been_sent(x, kind));
		lua_setfield(L, -2, "sent");
	}
}

/* Pushes the arrival notice of a stream transfer: id, arrived (bytes waiting), status, and
 * the headers on its first notice. */
static void push_arrival(lua_State *L, xfer *x)
{
	long status = 0;
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, x->id);
	lua_setfield(L, -2, "id");
	set_number(L, "arrived", (lua_Number)x->body.len);
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	lua_pushinteger(L, (lua_Integer)status);
	lua_setfield(L, -2, "status");
	if (!x->announced) {
		x->announced = 1;
		push_headers(L, &x->head);
		lua_setfield(L, -2, "headers");
	}
}

static void unanchor(lua_State *L, engine *e, xfer *x);

/* Reports every arrival notice, then every finished transfer, as an array, freeing each
 * finished one once its table is stored. A transfer that also finished is reported only by
 * its result, whose body holds what was not taken. */
static int push_finished(lua_State *L, engine *e)
{
	int n = 0;
	lua_newtable(L);
	while (e->arr_head != NULL) {
		xfer *x = e->arr_head;
		/* Unlinked first: should a table fail to build, the list stays consistent. */
		e->arr_head = x->next_arrived;
		if (e->arr_head == NULL)
			e->arr_tail = NULL;
		x->arrived = 0;
		x->next_arrived = NULL;
		if (x->done || x->body.len == 0)
			continue;
		push_arrival(L, x);
		lua_rawseti(L, -2, ++n);
	}
	while (e->done_head != NULL) {
		xfer *x = e->done_head;
		push_result(L, x);
		lua_rawseti(L, -2, ++n);
		e->done_head = x->next_done;
		if (e->done_head == NULL)
			e->done_tail = NULL;
		engine_forget(e, x);
		unanchor(L, e, x);
		xfer_free(x);
	}
	return 1;
}

/* ---------------------------------------------------------------- engine methods */

/* A non-empty environment variable, or NULL. */
static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);
	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* CA options; without either, the variables the curl tool reads (libcurl does not). Returns
 * 0, or -1 when libcurl refuses one (a TLS backend without CAPATH support, no memory). */
static int set_ca(CURL *h, const req *r)
{
	const char *file = r->ca_file, *dir = r->ca_path;
	if (file == NULL && dir == NULL) {
		file = env_nonempty("CURL_CA_BUNDLE");
		if (file == NULL) {
			file = env_nonempty("SSL_CERT_FILE");
			dir = env_nonempty("SSL_CERT_DIR");
		}
	}
	if (file != NULL && curl_easy_setopt(h, CURLOPT_CAINFO, file) != CURLE_OK)
		return -1;
	if (dir != NULL && curl_easy_setopt(h, CURLOPT_CAPATH, dir) != CURLE_OK)
		return -1;
	return 0;
}

/* Configures the easy handle of a new transfer. Returns NULL, or what failed (the caller
 * frees the transfer and raises). No Lua is touched here. */
static const char *xfer_setup(engine *e, xfer *x, const req *r, lua_State *L)
{
	CURL *h = x->easy;
	int i;
	int is_get = strcmp(r->method, "GET") == 0, is_head = strcmp(r->method, "HEAD") == 0;
	int is_post = strcmp(r->method, "POST") == 0, is_put = strcmp(r->method, "PUT") == 0;

	for (i = 1; i <= r->nlines; i++) {
		struct curl_slist *s;
		lua_rawgeti(L, r->lines, i); /* already strings: no conversion, cannot raise */
		s = curl_slist_append(x->headers, lua_tostring(L, -1));
		lua_pop(L, 1);
		if (s == NULL)
			return "not enough memory";
		x->headers = s;
	}

	curl_easy_setopt(h, CURLOPT_PRIVATE, (void *)x);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (curl_easy_setopt(h, CURLOPT_URL, r->url) != CURLE_OK)
		return "cannot set the URL";
	/* Only http and https, also after a redirect: a server must not be able to send us to
	 * file:// or anything else. */
#if LIBCURL_VERSION_NUM >= 0x075500
	if (curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
		curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK)
		return "cannot restrict protocols to http and https";
#else
	if (curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) !=
		CURLE_OK ||
		curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS,
			(long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK)
		return "cannot restrict protocols to http and https";
#endif
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	/* Not checked: without nghttp2 libcurl refuses and HTTP/1.1 is used, which is fine. */
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, on_sockopt);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, r->follow ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, r->fresh ? 1L : 0L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, r->max_redirects);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, r->connect_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms);
	/* A stream's cap is on the bytes waiting to be taken, not on its Content-Length. */
	if (!r->stream)
		curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, r->max_response);
	if (r->stall_s > 0) {
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, r->stall_s);
	}
	if (set_ca(h, r) != 0)
		return "cannot set ca_file or ca_path";
	curl_easy_setopt(h, CURLOPT_USERAGENT, e->user_agent);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->headers);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, (void *)x);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)x);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);

	if (x->in != NULL || x->parts != NULL) {
		int parts = x->parts != NULL;
		curl_off_t size = parts ? x->parts_size : x->in_size;
		curl_easy_setopt(h, CURLOPT_READFUNCTION, parts ? on_read_parts : on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, (void *)x);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, parts ? on_seek_parts : on_seek);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, (void *)x);
		if (is_post) {
			curl_easy_setopt(h, CURLOPT_POST, 1L);
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, size);
		} else {
			curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, size);
			if (!is_put)
				curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
		}
	} else if (r->body != NULL) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
		if (curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, r->body) != CURLE_OK)
			return "not enough memory";
		if (!is_post)
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	} else if (is_head) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (!is_get) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	}
	return NULL;
}

/* Checks body_parts and leaves on the stack a plain table of three values per part, which
 * engine_request later reads with lua_rawgeti alone (nothing there can raise): the string
 * (the data, or the file's path), the kind (0 string, 1 file, 2 file as base64) and the
 * file's expected size (-1: whatever it is when opened). */
static void read_parts(lua_State *L, int t, req *r)
{
	static const char *const keys[] = { "file", "data", "base64", "size", NULL };
	int list, norm, i, n;
	lua_getfield(L, t, "body_parts");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return;
	}
	if (!lua_istable(L, -1))
		luaL_error(L, "body_parts must be a table (got %s)", luaL_typename(L, -1));
	list = lua_gettop(L);
	n = (int)lua_rawlen(L, list);
	lua_createtable(L, 3 * n, 0);
	norm = lua_gettop(L);
	for (i = 1; i <= n; i++) {
		lua_rawgeti(L, list, i);
		if (lua_type(L, -1) == LUA_TSTRING) {
			lua_rawseti(L, norm, 3 * i - 2);
			lua_pushinteger(L, 0);
			lua_pushinteger(L, -1);
		} else if (lua_istable(L, -1)) {
			int part = lua_gettop(L), base64;
			size_t len;
			const char *path;
			lua_Number size = -1;
			char what[32];
			snprintf(what, sizeof(what), "body_parts[%d]", i);
			check_keys(L, part, keys, what);
			lua_getfield(L, part, "data");
			if (!lua_isnil(L, -1)) {
				/* A data part: the bytes of a Lua string, sent (or base64 encoded) from
				 * the string itself, which the engine anchors while the transfer runs. */
				if (lua_type(L, -1) != LUA_TSTRING)
					luaL_error(L, "body_parts[%d].data must be a string (got %s)", i,
						luaL_typename(L, -1));
				lua_getfield(L, part, "file");
				if (!lua_isnil(L, -1))
					luaL_error(L, "body_parts[%d] has both file and data", i);
				lua_pop(L, 1);
				lua_getfield(L, part, "size");
				if (!lua_isnil(L, -1))
					luaL_error(L, "body_parts[%d].size is only for a file", i);
				lua_pop(L, 1);
				lua_rawseti(L, norm, 3 * i - 2);
				base64 = opt_bool(L, part, "base64", 0);
				lua_pop(L, 1); /* the part */
				lua_pushinteger(L, base64 ? 4 : 3);
				lua_pushnumber(L, -1);
				lua_rawseti(L, norm, 3 * i);
				lua_rawseti(L, norm, 3 * i - 1);
				r->data_parts++;
				continue;
			}
			lua_pop(L, 1);
			path = opt_string(L, part, "file", NULL, &len);
			if (path == NULL || len == 0 || strlen(path) != len)
				luaL_error(L, "body_parts[%d].file must be a non-empty path without NUL bytes"
					" (or data a string)", i);
			lua_rawseti(L, norm, 3 * i - 2);
			base64 = opt_bool(L, part, "base64", 0);
			lua_getfield(L, part, "size");
			if (!lua_isnil(L, -1)) {
				lua_pop(L, 1);
				size = opt_count(L, part, "size", 0);
			} else {
				lua_pop(L, 1);
			}
			lua_pop(L, 1); /* the part */
			lua_pushinteger(L, base64 ? 2 : 1);
			lua_pushnumber(L, size);
		} else {
			luaL_error(L, "body_parts[%d] must be a string or a table { file = path, "
				"base64 = bool, size = n } or { data = string, base64 = bool } (got %s)", i,
				luaL_typename(L, -1));
		}
		lua_rawseti(L, norm, 3 * i);
		lua_rawseti(L, norm, 3 * i - 1);
	}
	r->parts = norm;
	r->nparts = n;
}

/* Pushes the engine's table of anchored data parts (id -> the checked body_parts holding
 * their strings), made on first use when `make`; else pushes nil when there is none. It
 * lives in the registry under anchors_key, one table per engine. Making it may raise. */
static void push_anchors(lua_State *L, engine *e, int make)
{
	lua_pushlightuserdata(L, (void *)&anchors_key);
	lua_rawget(L, LUA_REGISTRYINDEX);
	if (lua_isnil(L, -1)) {
		if (!make)
			return;
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushlightuserdata(L, (void *)&anchors_key);
		lua_pushvalue(L, -2);
		lua_rawset(L, LUA_REGISTRYINDEX);
	}
	lua_pushlightuserdata(L, (void *)e);
	lua_rawget(L, -2);
	if (lua_isnil(L, -1) && make) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushlightuserdata(L, (void *)e);
		lua_pushvalue(L, -2);
		lua_rawset(L, -4);
	}
	lua_remove(L, -2);
}

/* Lets go of the data parts anchored under `id`. Clearing a key allocates nothing, so
 * this never raises. */
static void unanchor_id(lua_State *L, engine *e, lua_Integer id)
{
	push_anchors(L, e, 0);
	if (lua_istable(L, -1)) {
		lua_pushnil(L);
		lua_rawseti(L, -2, id);
	}
	lua_pop(L, 1);
}

static void unanchor(lua_State *L, engine *e, xfer *x)
{
	if (!x->anchored)
		return;
	x->anchored = 0;
	unanchor_id(L, e, x->id);
}

/* Reads request{...} into a req, raising on any misuse before anything is allocated. */
static void read_request(lua_State *L, int t, req *r)
{
	static const char *const keys[] = { "method", "url", "headers", "body", "body_file",
		"body_parts", "output", "connect_timeout", "timeout", "max_response", "follow",
		"max_redirects", "fresh_connect", "stall_timeout", "ca_file", "ca_path", "stream",
		"skip_repeats", "elide_data_uris", NULL };
	int headers = 0;
	size_t mlen;
	luaL_checktype(L, t, LUA_TTABLE);
	luaL_checkstack(L, 24, "request options");
	check_keys(L, t, keys, "request");
	r->method = opt_string(L, t, "method", "GET", &mlen);
	if (!is_token(r->method, mlen))
		luaL_error(L, "invalid method '%s'", r->method);
	r->url = opt_string(L, t, "url", NULL, NULL);
	if (r->url == NULL)
		luaL_error(L, "url is required");
	if (!has_prefix_ci(r->url, "http://") && !has_prefix_ci(r->url, "https://"))
		luaL_error(L, "url must be http:// or https:// (got '%s')", r->url);
	r->body = opt_string(L, t, "body", NULL, &r->body_len);
	r->body_file = opt_string(L, t, "body_file", NULL, NULL);
	if (r->body != NULL && r->body_file != NULL)
		luaL_error(L, "body and body_file are mutually exclusive");
	read_parts(L, t, r);
	if (r->parts != 0 && (r->body != NULL || r->body_file != NULL))
		luaL_error(L, "body_parts excludes body and body_file");
	r->output = opt_path(L, t, "output");
	r->ca_file = opt_path(L, t, "ca_file");
	r->ca_path = opt_path(L, t, "ca_path");
	r->connect_ms = seconds_to_ms(opt_number(L, t, "connect_timeout", DEFAULT_CONNECT_TIMEOUT));
	r->timeout_ms = seconds_to_ms(opt_number(L, t, "timeout", 0));
	r->stall_s = to_long(ceil(opt_number(L, t, "stall_timeout", 0)));
	r->max_response = (curl_off_t)opt_count(L, t, "max_response", DEFAULT_MAX_RESPONSE);
	r->follow = opt_bool(L, t, "follow", 1);
	r->stream = opt_bool(L, t, "stream", 0);
	if (r->stream && r->output != NULL)
		luaL_error(L, "stream and output are mutually exclusive");
	r->skip_repeats = opt_bool(L, t, "skip_repeats", 0);
	if (r->skip_repeats && !r->stream)
		luaL_error(L, "skip_repeats needs stream = true");
	{
		lua_Number elide = opt_count(L, t, "elide_data_uris", 0);
		if (elide != 0 && (elide < VIDU_ELIDE_MIN || elide > (lua_Number)SIZE_MAX / 2))
			luaL_error(L, "elide_data_uris must be 0 (off) or a byte count of at least %d",
				VIDU_ELIDE_MIN);
		if (elide != 0 && (r->stream || r->output != NULL))
			luaL_error(L, "elide_data_uris is for answers kept in memory: not with %s",
				r->stream ? "stream" : "output");
		r->elide = (size_t)elide;
	}
	r->max_redirects = to_long(opt_count(L, t, "max_redirects", DEFAULT_MAX_REDIRECTS));
	/* libcurl silently re-sends a request whose reused connection dies before any answer
	 * byte ("Connection died, retrying a fresh connect"), POST included: for a submit that
	 * is a second paid job. A request on a fresh connection is never re-sent that way, so
	 * that is the default for the methods that are not idempotent. */
	r->fresh = opt_bool(L, t, "fresh_connect",
		strcmp(r->method, "POST") == 0 || strcmp(r->method, "PATCH") == 0);
	lua_getfield(L, t, "headers");
	if (!lua_isnil(L, -1)) {
		if (!lua_istable(L, -1))
			luaL_error(L, "headers must be a table (got %s)", luaL_typename(L, -1));
		headers = lua_gettop(L);
	}
	/* POST/PUT/PATCH without a body still send one (empty), so Content-Length: 0 goes out. */
	if (r->body == NULL && r->body_file == NULL && r->parts == 0 &&
		(strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0 ||
			strcmp(r->method, "PATCH") == 0)) {
		r->body = "";
		r->body_len = 0;
	}
	build_header_lines(L, headers, r->body != NULL || r->body_file != NULL || r->parts != 0, r);
}

/* Duplicates a C string with malloc (NULL stays NULL; NULL on failure sets *failed). */
static char *dup_string(const char *s, int *failed)
{
	char *d;
	size_t n;
	if (s == NULL)
		return NULL;
	n = strlen(s) + 1;
	d = (char *)malloc(n);
	if (d == NULL)
		*failed = 1;
	else
		memcpy(d, s, n);
	return d;
}

/* Copies the checked body_parts (read_parts) into x, opens the files and sums the
 * Content-Length. Returns NULL, or "not enough memory" (the caller frees x and raises); a
 * file that cannot be opened, is not a regular file or has another size than the one given
 * is recorded in x and reported by the next step() as not sent. Only lua_rawgeti and
 * conversions of values read_parts made touch Lua here: nothing can raise. */
static const char *parts_open(xfer *x, lua_State *L, const req *r)
{
	int i, nomem = 0, base64 = 0;
	x->parts = (body_part *)calloc(r->nparts > 0 ? (size_t)r->nparts : 1, sizeof(body_part));
	if (x->parts == NULL)
		return "not enough memory";
	x->nparts = (size_t)r->nparts;
	for (i = 0; i < r->nparts; i++) {
		body_part *pt = &x->parts[i];
		size_t len;
		const char *str;
		int kind;
		lua_Number want;
		lua_rawgeti(L, r->parts, 3 * i + 1);
		lua_rawgeti(L, r->parts, 3 * i + 2);
		lua_rawgeti(L, r->parts, 3 * i + 3);
		str = lua_tolstring(L, -3, &len);
		kind = (int)lua_tointeger(L, -2);
		want = lua_tonumber(L, -1);
		if (kind == 0) {
			pt->data = (char *)malloc(len > 0 ? len : 1);
			if (pt->data == NULL)
				nomem = 1;
			else
				memcpy(pt->data, str, len);
			pt->size = pt->wire = (curl_off_t)len;
		} else if (kind >= 3) {
			/* The string stays alive in r->parts until request() anchors that table. */
			pt->mem = str;
			pt->base64 = kind == 4;
			pt->size = (curl_off_t)len;
			pt->wire = pt->base64 ? (pt->size + 2) / 3 * 4 : pt->size;
		} else {
			pt->path = dup_string(str, &nomem);
			pt->base64 = kind == 2;
			base64 |= pt->base64;
			pt->size = want >= 0 ? (curl_off_t)want : -1;
		}
		lua_pop(L, 3);
		if (nomem)
			return "not enough memory";
	}
	if (base64 && x->eng->chunk == NULL) {
		x->eng->chunk = (unsigned char *)malloc(PART_CHUNK);
		if (x->eng->chunk == NULL)
			return "not enough memory";
	}
	for (i = 0; i < r->nparts && x->fail == FAIL_NONE; i++) {
		body_part *pt = &x->parts[i];
		struct stat st;
		if (pt->path == NULL)
			continue;
		pt->f = fopen(pt->path, "rb");
		if (pt->f == NULL) {
			xfer_file_fail(x, "open body part", pt->path, errno);
		} else if (fstat(fileno(pt->f), &st) != 0) {
			xfer_file_fail(x, "read body part", pt->path, errno);
		} else if (!S_ISREG(st.st_mode)) {
			xfer_file_refuse(x, "read body part", pt->path, "not a regular file");
		} else if ((curl_off_t)st.st_size > PART_FILE_MAX) {
			xfer_file_refuse(x, "read body part", pt->path, "file too large");
		} else if (pt->size >= 0 && (curl_off_t)st.st_size != pt->size) {
			snprintf(x->note, sizeof(x->note), "the file has %" CURL_FORMAT_CURL_OFF_T
				" bytes, not the %" CURL_FORMAT_CURL_OFF_T " it had when checked",
				(curl_off_t)st.st_size, pt->size);
			xfer_file_refuse(x, "read body part", pt->path, x->note);
		} else {
			pt->size = (curl_off_t)st.st_size;
			pt->wire = pt->base64 ? (pt->size + 2) / 3 * 4 : pt->size;
		}
	}
	for (i = 0; i < r->nparts; i++)
		x->parts_size += x->parts[i].wire;
	return NULL;
}

/* engine:request{...} -> id. Starts a transfer and returns at once; problems of the world
 * (an unreadable body_file, a refused connection) arrive later as a failed result. */
static int engine_request(lua_State *L)
{
	engine *e = check_engine(L);
	req r;
	xfer *x;
	const char *why = NULL;
	int nomem = 0;
	memset(&r, 0, sizeof(r));
	read_request(L, 2, &r);
	if (r.data_parts > 0) {
		/* Data parts are sent from their Lua strings: anchored now, while raising is still
		 * harmless, under the id the transfer is about to get; let go of when it is
		 * reported (or fails here, or the engine closes). */
		push_anchors(L, e, 1);
		lua_pushvalue(L, r.parts);
		lua_rawseti(L, -2, e->next_id);
		lua_pop(L, 1);
	}

	/* From here on nothing may raise until x is either owned by the engine or freed. */
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 16;
		xfer **xs = (xfer **)realloc(e->xs, cap * sizeof(*xs));
		if (xs == NULL) {
			if (r.data_parts > 0)
				unanchor_id(L, e, e->next_id);
			return luaL_error(L, "not enough memory");
		}
		e->xs = xs;
		e->cap = cap;
	}
	x = (xfer *)calloc(1, sizeof(*x));
	if (x == NULL) {
		if (r.data_parts > 0)
			unanchor_id(L, e, e->next_id);
		return luaL_error(L, "not enough memory");
	}
	x->id = e->next_id;
	x->anchored = r.data_parts > 0;
	x->max_response = r.max_response;
	x->eng = e;
	x->stream = r.stream;
	x->skip_repeats = r.skip_repeats;
	vidu_elide_init(&x->el, r.elide);
	x->stall_s = r.stall_s;
	x->timeout_ms = r.timeout_ms;
	x->started = mono_now();
	x->sink = r.output != NULL ? SINK_UNDECIDED : SINK_MEMORY;
	x->out_path = dup_string(r.output, &nomem);
	x->in_path = dup_string(r.body_file, &nomem);
	x->easy = nomem ? NULL : curl_easy_init();
	if (x->easy == NULL)
		why = "not enough memory";
	if (why == NULL && r.body_file != NULL) {
		struct stat st;
		x->in = fopen(x->in_path, "rbe"); /* e: close-on-exec (glibc) */
		if (x->in == NULL)
			xfer_file_fail(x, "open body_file", x->in_path, errno);
		else if (fstat(fileno(x->in), &st) != 0)
			xfer_file_fail(x, "read body_file", x->in_path, errno);
		else if (!S_ISREG(st.st_mode))
			xfer_file_fail(x, "read body_file", x->in_path, EISDIR);
		else
			x->in_size = (curl_off_t)st.st_size;
	}
	if (why == NULL && r.parts != 0)
		why = parts_open(x, L, &r);
	if (why == NULL && x->out_path != NULL) {
		/* Refused before anything is sent: a FIFO would block, a device swallow the body. */
		int err;
		const char *bad = vidu_output_target(x->out_path, &err);
		if (bad != NULL)
			xfer_file_refuse(x, "write output", x->out_path, bad);
		else if (err != 0)
			xfer_file_fail(x, "write output", x->out_path, err);
	}
	if (why == NULL)
		why = xfer_setup(e, x, &r, L);
	if (why == NULL && x->fail == FAIL_NONE) {
		CURLMcode mc = curl_multi_add_handle(e->multi, x->easy);
		if (mc != CURLM_OK)
			why = curl_multi_strerror(mc);
		else
			x->running = 1;
	}
	if (why != NULL) {
		unanchor(L, e, x);
		xfer_free(x);
		return luaL_error(L, "engine:request: %s", why);
	}
	e->next_id++;
	e->xs[e->n++] = x;
	if (x->fail != FAIL_NONE) /* reported by the next step() */
		engine_finish(e, x, x->fail_path == x->out_path ? CURLE_WRITE_ERROR : CURLE_READ_ERROR);
	lua_pushinteger(L, x->id);
	return 1;
}

/* engine:step([poll_sockets]) -> finished results; never blocks. */
static int engine_step(lua_State *L)
{
	engine *e = check_engine(L);
	engine_perform(e, lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2));
	return push_finished(L, e);
}

/* engine:wait(ms) -> finished results; blocks in curl_multi_poll at most ms (returning at
 * once when something is already waiting to be reported). With nothing in flight it still
 * waits the full ms: curl_multi_poll sleeps without descriptors, which is what a scheduler
 * whose coroutines are all between polls needs. */
static int engine_wait(lua_State *L)
{
	engine *e = check_engine(L);
	lua_Number ms = luaL_optnumber(L, 2, 1000);
	lua_Number settle = luaL_optnumber(L, 3, 0);
	if (!(ms >= 0))
		ms = 0;
	if (ms > INT_MAX)
		ms = INT_MAX;
	if (settle > 0 && e->done_head == NULL && e->arr_head == NULL) {
		lua_Number rest = settle - (mono_now() - e->driven) * 1000;
		if (rest > ms)
			rest = ms;
		if (rest >= 1) {
			(void)poll(NULL, 0, (int)rest);
			ms -= rest;
		}
	}
	if (e->watched) {
		watch_drive(e, e->done_head == NULL && e->arr_head == NULL ? (int)ms : -1);
		return push_finished(L, e);
	}
	if (e->done_head == NULL && e->arr_head == NULL) {
		int fds = 0;
		curl_multi_poll(e->multi, NULL, 0, (int)ms, &fds);
	}
	engine_perform(e, 1);
	return push_finished(L, e);
}

/* Looks up the transfer id in argument 2, or NULL. */
static xfer *arg_xfer(lua_State *L, engine *e)
{
	int found;
	size_t i;
	lua_Number id = luaL_checknumber(L, 2);
	/* Range first: converting an out-of-range float to an integer is undefined. */
	if (!(id >= 1 && id <= 9007199254740992.0) || id != floor(id))
		return NULL;
	i = engine_find(e, (lua_Integer)id, &found);
	return found ? e->xs[i] : NULL;
}

/* engine:progress(id) -> down_now, down_total, up_now, up_total, or nil for an unknown id. */
static int engine_progress(lua_State *L)
{
	engine *e = check_engine(L);
	xfer *x = arg_xfer(L, e);
	if (x == NULL) {
		lua_pushnil(L);
		return 1;
	}
	lua_pushnumber(L, (lua_Number)x->dlnow);
	lua_pushnumber(L, (lua_Number)x->dltotal);
	lua_pushnumber(L, (lua_Number)x->ulnow);
	lua_pushnumber(L, (lua_Number)x->ultotal);
	return 4;
}

/* engine:take(id) -> the bytes a stream transfer received since the last take, or nil when
 * there are none (or no such transfer). The buffer keeps its memory for the next bytes. */
static int engine_take(lua_State *L)
{
	engine *e = check_engine(L);
	xfer *x = arg_xfer(L, e);
	if (x == NULL || x->body.len == 0) {
		lua_pushnil(L);
		return 1;
	}
	lua_pushlstring(L, x->body.data, x->body.len);
	x->body.len = 0;
	return 1;
}

/* engine:cancel(id) -> true if the transfer was in flight; the next step() reports it. */
static int engine_cancel(lua_State *L)
{
	engine *e = check_engine(L);
	xfer *x = arg_xfer(L, e);
	if (x == NULL || x->done) {
		lua_pushboolean(L, 0);
		return 1;
	}
	x->fail = FAIL_CANCELED;
	engine_finish(e, x, CURLE_ABORTED_BY_CALLBACK);
	lua_pushboolean(L, 1);
	return 1;
}

/* engine:pending() -> transfers not yet reported (running, or finished awaiting step()). */
static int engine_pending(lua_State *L)
{
	engine *e = check_engine(L);
	lua_pushinteger(L, (lua_Integer)e->n);
	return 1;
}

/* engine:timeout() -> ms until libcurl wants step(), -1 for no timer; 0 when results wait. */
static int engine_timeout(lua_State *L)
{
	engine *e = check_engine(L);
	long ms = -1;
	if (e->done_head != NULL || e->arr_head != NULL)
		ms = 0;
	else if (e->watched)
		ms = watch_timer_ms(e);
	else
		curl_multi_timeout(e->multi, &ms);
	lua_pushinteger(L, (lua_Integer)ms);
	return 1;
}

/* engine:watch(): from now on libcurl's sockets are watched by the host (see "sockets a host
 * watches"). Once on, it stays on; calling it again does nothing. */
static int engine_watch(lua_State *L)
{
	engine *e = check_engine(L);
	if (!e->watched)
		watch_start(e);
	return 0;
}

/* engine:sockets() -> { fd, wish, fd, wish, ... }: libcurl's socket wishes since the last
 * call, in order; wish is "r", "w", "rw", "none" (keep the socket, watch nothing) or
 * "remove" (libcurl is about to close it or has closed it: stop watching it now). */
static int engine_sockets(lua_State *L)
{
	engine *e = check_engine(L);
	size_t i;
	int n = 0;
	if (e->wish_nomem) {
		e->wish_nomem = 0;
		return luaL_error(L, "engine:sockets: not enough memory to record libcurl's sockets");
	}
	lua_createtable(L, (int)(e->nchanges * 2), 0);
	for (i = 0; i < e->nchanges; i++) {
		static const char *const names[] = { "none", "r", "w", "rw" };
		int w = e->changes[i].what;
		lua_pushinteger(L, (lua_Integer)e->changes[i].fd);
		lua_rawseti(L, -2, ++n);
		lua_pushstring(L, w == CURL_POLL_REMOVE ? "remove" : names[w & 3]);
		lua_rawseti(L, -2, ++n);
	}
	e->nchanges = 0;
	return 1;
}

/* engine:socket_action(fd, events) -> finished results: the host saw the socket ready
 * (events: "r", "w", "rw", with "e" for an error); engine:socket_action() -> the same for
 * libcurl's timer. Only on a watched engine. */
static int engine_socket_action(lua_State *L)
{
	engine *e = check_engine(L);
	if (!e->watched)
		return luaL_error(L, "engine:socket_action: the engine is not watched (call watch())");
	if (lua_isnoneornil(L, 2)) {
		watch_action(e, CURL_SOCKET_TIMEOUT, 0);
	} else {
		lua_Number fd = luaL_checknumber(L, 2);
		const char *ev = luaL_optstring(L, 3, "");
		int mask = 0;
		if (!(fd >= 0 && fd <= INT_MAX) || fd != floor(fd))
			return luaL_argerror(L, 2, "not a socket");
		for (; *ev != '\0'; ev++) {
			if (*ev == 'r')
				mask |= CURL_CSELECT_IN;
			else if (*ev == 'w')
				mask |= CURL_CSELECT_OUT;
			else if (*ev == 'e')
				mask |= CURL_CSELECT_ERR;
			else
				return luaL_argerror(L, 3, "events are letters r, w and e");
		}
		watch_action(e, (curl_socket_t)fd, mask);
	}
	return push_finished(L, e);
}

/* __gc, __close and engine:close(): one function, liolib style. Closing twice is harmless;
 * transfers in flight are aborted and never reported. */
static int engine_close(lua_State *L)
{
	engine *e = (engine *)luaL_checkudata(L, 1, ENGINE_MT);
	engine_release(e);
	/* The transfers are gone: so is every anchor of their data parts. */
	lua_pushlightuserdata(L, (void *)&anchors_key);
	lua_rawget(L, LUA_REGISTRYINDEX);
	if (lua_istable(L, -1)) {
		lua_pushlightuserdata(L, (void *)e);
		lua_pushnil(L);
		lua_rawset(L, -3);
	}
	lua_pop(L, 1);
	return 0;
}

/* __tostring: the type and whether the engine is still open. */
static int engine_tostring(lua_State *L)
{
	engine *e = (engine *)luaL_checkudata(L, 1, ENGINE_MT);
	if (e->multi == NULL)
		lua_pushliteral(L, "vidu.engine (closed)");
	else
		lua_pushfstring(L, "vidu.engine (%p)", (void *)e);
	return 1;
}

/* engine:configure{ max_host_connections, max_total_connections }: the bounds core.engine
 * took, changed on a running engine (a scheduler raises its per-host backstop when a client
 * needs more connections for its streams). */
static int engine_configure(lua_State *L)
{
	static const char *const keys[] = { "max_host_connections", "max_total_connections", NULL };
	engine *e = check_engine(L);
	luaL_checktype(L, 2, LUA_TTABLE);
	check_keys(L, 2, keys, "configure");
	lua_getfield(L, 2, "max_host_connections");
	if (!lua_isnil(L, -1))
		curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
			to_long(opt_count(L, 2, "max_host_connections", 0)));
	lua_getfield(L, 2, "max_total_connections");
	if (!lua_isnil(L, -1))
		curl_multi_setopt(e->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
			to_long(opt_count(L, 2, "max_total_connections", 0)));
	return 0;
}

/* core.engine{...} -> engine. The userdata exists, closed, before the multi handle does, so
 * a failure at any point leaves nothing that __gc cannot free. */
static int engine_new(lua_State *L)
{
	static const char *const keys[] = { "max_host_connections", "max_total_connections",
		"user_agent", NULL };
	engine *e;
	const char *ua;
	long max_host, max_total;
	int nomem = 0;
	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	check_keys(L, 1, keys, "engine");
	max_host = to_long(opt_count(L, 1, "max_host_connections", DEFAULT_MAX_HOST_CONNECTIONS));
	max_total = to_long(opt_count(L, 1, "max_total_connections", 0));
	ua = opt_string(L, 1, "user_agent", DEFAULT_USER_AGENT, NULL);
	if (strpbrk(ua, "\r\n") != NULL)
		luaL_error(L, "user_agent contains a line break");

	e = (engine *)lua_newuserdata(L, sizeof(*e));
	memset(e, 0, sizeof(*e));
	e->epfd = -1;
	e->next_id = 1;
	luaL_setmetatable(L, ENGINE_MT);
	e->user_agent = dup_string(ua, &nomem);
	if (nomem)
		return luaL_error(L, "not enough memory");
	e->multi = curl_multi_init();
	if (e->multi == NULL)
		return luaL_error(L, "curl_multi_init failed");
	curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host);
	curl_multi_setopt(e->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_total);
	return 1;
}

static const luaL_Reg engine_methods[] = {
	{ "request", engine_request },
	{ "step", engine_step },
	{ "wait", engine_wait },
	{ "progress", engine_progress },
	{ "take", engine_take },
	{ "configure", engine_configure },
	{ "cancel", engine_cancel },
	{ "pending", engine_pending },
	{ "timeout", engine_timeout },
	{ "watch", engine_watch },
	{ "sockets", engine_sockets },
	{ "socket_action", engine_socket_action },
	{ "close", engine_close },
	{ NULL, NULL }
};

static const luaL_Reg engine_meta[] = {
	{ "__gc", engine_close },
	{ "__close", engine_close },
	{ "__tostring", engine_tostring },
	{ NULL, NULL }
};

/* Adds core.engine to the module table on the stack; initialises libcurl once per process. */
void vidu_open_engine(lua_State *L)
{
	if (!curl_ready) {
		CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
		if (rc != CURLE_OK)
			luaL_error(L, "curl_global_init failed: %s", curl_easy_strerror(rc));
		curl_ready = 1;
	}
	if (luaL_newmetatable(L, ENGINE_MT)) {
		luaL_setfuncs(L, engine_meta, 0);
		luaL_newlib(L, engine_methods);
		lua_setfield(L, -2, "__index");
	}
	lua_pop(L, 1);
	lua_pushcfunction(L, engine_new);
	lua_setfield(L, -2, "engine");
}
