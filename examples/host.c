/*
 * examples/host.c: a frame loop that embeds Lua 5.4 and drives vidu with one vidu.step() per
 * 60 fps frame, as a game engine or a tool with its own loop would. Nothing in the frame ever
 * waits on the network: step() does about 2 ms of work at most and returns.
 *
 *   make build/hosts/host              (or: cc examples/host.c $(pkg-config --cflags --libs lua5.4))
 *   LUA_PATH=... LUA_CPATH=... build/hosts/host BASE_URL [COUNT [IMAGE [PROVIDER]]]
 *
 * It spawns COUNT generations (default 1000) against BASE_URL (the emulator, or a provider
 * with its key in the environment), then calls vidu.step() once a frame and times each call.
 * When all have finished it prints the time spent in step() per frame (median, p99, max) and
 * exits 0, or 1 if any generation failed or 600 s passed.
 *
 * Knobs, for measuring: VIDU_HOST_GC=stop|generational|incremental[,PAUSE,STEPMUL,STEPSIZE]
 * sets the collector before anything runs (collectgarbage's own words and numbers);
 * VIDU_HOST_SLOW=MS prints every step whose CPU time passed MS ms, with the Lua heap before
 * and after it (a step in which the heap shrank is one in which a collection cycle swept).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#define FRAME_NS 16666667L /* 60 frames a second */
#define MAX_SECONDS 600.0

/* What the Lua side does: one coroutine per generation, counted in a table the frame loop
 * reads. Errors are counted, with the last one kept for the report. */
static const char *const setup_lua =
	"local url, count, image, provider = ...\n"
	"local vidu = require('vidu')\n"
	"-- VIDU_HOST_GC=generational|incremental|stop: the collector's mode, to compare its pauses\n"
	"-- (with its parameters after commas: incremental,PAUSE,STEPMUL,STEPSIZE)\n"
	"local gc = os.getenv('VIDU_HOST_GC')\n"
	"if gc then\n"
	"  local w = {}\n"
	"  for x in gc:gmatch('[^,]+') do w[#w + 1] = tonumber(x) or x end\n"
	"  collectgarbage(table.unpack(w))\n"
	"end\n"
	"local client = vidu.client(provider, { api_key = os.getenv('VIDU_HOST_KEY') or 'host-key',\n"
	"  base_url = url })\n"
	"local state = { done = 0, failed = 0, count = count }\n"
	"for i = 1, count do\n"
	"  vidu.spawn(function()\n"
	"    local task, err = client:submit{ image = image, prompt = 'frame loop ' .. i }\n"
	"    local ok\n"
	"    if task then ok, err = task:wait{ timeout = 300 } end\n"
	"    if ok then state.done = state.done + 1\n"
	"    else state.failed = state.failed + 1; state.last_error = tostring(err) end\n"
	"  end)\n"
	"end\n"
	"return state, vidu.step\n";

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This thread's CPU time: what step() itself spent, without the time the OS gave others. */
static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* An integer field of the table at the top of the stack. */
static long field_int(lua_State *L, const char *k)
{
	long v;
	lua_getfield(L, -1, k);
	v = (long)lua_tointeger(L, -1);
	lua_pop(L, 1);
	return v;
}

/* Adds debug.traceback to an error message (the handler for lua_pcall). */
static int traceback(lua_State *L)
{
	luaL_traceback(L, L, lua_tostring(L, 1), 1);
	return 1;
}

int main(int argc, char **argv)
{
	const char *url = argc > 1 ? argv[1] : NULL;
	long count = argc > 2 ? strtol(argv[2], NULL, 10) : 1000;
	const char *image = argc > 3 ? argv[3] : "spec/fixtures/png_33x17.png";
	const char *provider = argc > 4 ? argv[4] : "vidu";
	lua_State *L;
	double *times = NULL, *cpus = NULL, t_start, total = 0;
	size_t nframes = 0, cap = 0;
	struct timespec next;
	long done = 0, failed = 0;
	int rc = 0;
	/* VIDU_HOST_SLOW=MS: print every step longer than MS ms, with the Lua heap before and after
	 * (a step where the heap shrinks is one where a collection cycle ended). */
	const char *slow_env = getenv("VIDU_HOST_SLOW");
	double slow = slow_env ? strtod(slow_env, NULL) / 1000 : -1;

	if (url == NULL || count <= 0) {
		fprintf(stderr, "usage: %s BASE_URL [COUNT [IMAGE [PROVIDER]]]\n", argv[0]);
		return 2;
	}
	L = luaL_newstate();
	if (L == NULL)
		return 2;
	luaL_openlibs(L);
	lua_pushcfunction(L, traceback);
	if (luaL_loadstring(L, setup_lua) != LUA_OK) {
		fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
		return 2;
	}
	lua_pushstring(L, url);
	lua_pushinteger(L, (lua_Integer)count);
	lua_pushstring(L, image);
	lua_pushstring(L, provider);
	if (lua_pcall(L, 4, 2, 1) != LUA_OK) {
		fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
		return 2;
	}
	/* Stack: traceback, state, vidu.step */

	t_start = now_s();
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (;;) {
		double t0, t1, c0, c1;
		int kb0 = lua_gc(L, LUA_GCCOUNT, 0);
		lua_pushvalue(L, 3);            /* vidu.step, returned by the setup chunk */
		t0 = now_s();
		c0 = cpu_s();
		if (lua_pcall(L, 0, 1, 1) != LUA_OK) {
			fprintf(stderr, "host: vidu.step: %s\n", lua_tostring(L, -1));
			rc = 2;
			break;
		}
		t1 = now_s();
		c1 = cpu_s();
		lua_pop(L, 1);
		if (slow >= 0 && c1 - c0 > slow)
			printf("host: slow step at %.3f s (clock %.6f): %.3f ms (CPU %.3f ms), heap %d -> %d KB\n",
				t0 - t_start, t0, (t1 - t0) * 1000, (c1 - c0) * 1000, kb0, lua_gc(L, LUA_GCCOUNT, 0));
		if (nframes == cap) {
			double *p, *c;
			cap = cap ? cap * 2 : 4096;
			p = (double *)realloc(times, cap * sizeof(*p));
			if (p == NULL) {
				rc = 2;
				break;
			}
			times = p;
			c = (double *)realloc(cpus, cap * sizeof(*c));
			if (c == NULL) {
				rc = 2;
				break;
			}
			cpus = c;
		}
		cpus[nframes] = c1 - c0;
		times[nframes++] = t1 - t0;
		total += t1 - t0;

		lua_pushvalue(L, 2);
		done = field_int(L, "done");
		failed = field_int(L, "failed");
		lua_pop(L, 1);
		if (done + failed >= count || t1 - t_start > MAX_SECONDS)
			break;

		/* The rest of the frame: the host's own work would go here; we sleep to the next. */
		next.tv_nsec += FRAME_NS;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_nsec -= 1000000000L;
			next.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}

	if (rc == 0 && nframes > 0) {
		double wall = now_s() - t_start;
		qsort(times, nframes, sizeof(*times), cmp_double);
		printf("host: %ld generations: %ld done, %ld failed in %.1f s, %zu frames at 60 fps\n",
			count, done, failed, wall, nframes);
		printf("host: time in vidu.step() per frame: median %.3f ms, p99 %.3f ms, max %.3f ms"
			" (total %.2f s)\n",
			times[nframes / 2] * 1000, times[(size_t)((double)(nframes - 1) * 0.99)] * 1000,
			times[nframes - 1] * 1000, total);
		/* On a machine shared with other processes (the emulator, say) the wall time of a
		 * step includes the time the OS ran them instead: the CPU time is step()'s own. */
		qsort(cpus, nframes, sizeof(*cpus), cmp_double);
		printf("host: CPU time in vidu.step() per frame: median %.3f ms, p99 %.3f ms, max %.3f ms\n",
			cpus[nframes / 2] * 1000, cpus[(size_t)((double)(nframes - 1) * 0.99)] * 1000,
			cpus[nframes - 1] * 1000);
		if (failed > 0 || done < count) {
			lua_pushvalue(L, 2);
			lua_getfield(L, -1, "last_error");
			fprintf(stderr, "host: not all generations succeeded; last error: %s\n",
				lua_tostring(L, -1) ? lua_tostring(L, -1) : "(none: time ran out)");
			lua_pop(L, 2);
			rc = 1;
		}
	}
	free(times);
	free(cpus);
	lua_close(L);
	return rc;
}
