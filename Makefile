# lua-vidu: build, test, demo, bench.
#
#   make            build vidu.core for Lua 5.4 (LUA=luajit, lua5.1 or lua5.3 for the others)
#   make deps       install what the project needs from Debian's packages (skips what is present)
#   make test       the busted suite (ends with "N passed, N failed")
#   make memcheck   the suite under valgrind, failing on any leak or memory error
#   make sanitize   the suite against an ASan+UBSan build of the core (GC=aggressive too)
#   make demo       image -> video against the offline emulator, no key needed
#                   (PROVIDER=fal|vidu|wavespeed|vtrix|relay, default vidu)
#   make bench      the benchmarks in bench/, figures printed
#   make lint       luacheck over the Lua code
#   make fuzz       the libFuzzer targets of fuzz/, FUZZ_SECONDS (default 60) each
#   make test-hosts vidu in headless Neovim, nginx with its Lua module and a C frame loop
#   make test-report  the contact sheet in headless Chromium (installs chromium)
#   make faults     the fault matrix against the emulator, a table of outcomes (bench/faults/)

LUA ?= lua5.4
# pkg-config names the interpreters the same way Debian does, but for LuaJIT.
LUA_PC := $(LUA)
BUSTED := /usr/bin/busted
BUILD := build/$(LUA)
CORE := $(BUILD)/vidu/core.so

CC ?= cc
OPT ?= -O2
WARN := -Wall -Wextra -pedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS_ALL = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -g $(OPT) $(WARN) $(EXTRA_CFLAGS) \
	$(shell pkg-config --cflags $(LUA_PC) libcurl libcrypto 2>/dev/null)
LDLIBS = $(shell pkg-config --libs libcurl libcrypto 2>/dev/null || echo -lcurl -lcrypto)

SRC := $(wildcard csrc/*.c)
HDR := $(wildcard csrc/*.h)
OBJ := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SRC))

# Debian packages the project needs. Each target that needs them depends on `deps`, which only
# calls apt-get when something is missing, so a fresh machine needs nothing but `make`.
# apt-get never removes a package for us: it is asked first (-s) and run with --no-remove.
# Where nginx-lua's luajit2 is installed, its -dev package stands in for Debian's LuaJIT pair,
# which conflicts with it (luajit2 is a drop-in: same luajit binary, same pkg-config name).
LUAJIT_PKGS := $(if $(shell dpkg-query -W -f='$${Status}' libluajit2-5.1-2 2>/dev/null | grep 'ok installed'),\
	luajit2 libluajit2-5.1-dev,luajit libluajit-5.1-dev)
PKGS := gcc make pkg-config lua5.4 liblua5.4-dev $(LUAJIT_PKGS) \
	lua5.1 liblua5.1-0-dev lua5.3 liblua5.3-dev \
	libcurl4-openssl-dev libssl-dev lua-cjson lua-luv lua-busted lua-check luarocks valgrind openssl ffmpeg
DEPS_STAMP := build/.deps-ok

# Environment every Lua process of the project runs with: our modules first.
RUN_ENV = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" \
	LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;" VIDU_LUA="$(LUA)"

.PHONY: all deps test memcheck sanitize demo bench lint clean test-hosts

all: $(CORE)

deps: $(DEPS_STAMP)

$(DEPS_STAMP): Makefile
	@missing=""; for p in $(PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		if $$SUDO apt-get install -s --no-install-recommends $$missing | grep '^Remv'; then \
			echo "make deps: installing$$missing would remove the packages above; not done"; exit 1; \
		fi; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends --no-remove \
			$$missing || exit 1; \
	fi
	@mkdir -p $(dir $@) && touch $@

$(BUILD)/obj/%.o: csrc/%.c $(HDR) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(CORE): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(OBJ) $(LDFLAGS) $(LDLIBS)

test: $(CORE)
	$(RUN_ENV) $(LUA) $(BUSTED) --cpath="$(BUILD)/?.so" $(BUSTED_ARGS)

# valgrind over the whole suite. Only definite/indirect leaks and memory errors fail the run;
# "still reachable" is libcurl's and OpenSSL's one-time init, freed at exit by design.
memcheck: $(CORE)
	$(RUN_ENV) VIDU_MEMCHECK=1 valgrind -q --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
		--suppressions=spec/support/valgrind.supp \
		$(LUA) $(BUSTED) --cpath="$(BUILD)/?.so" $(BUSTED_ARGS)

# An ASan+UBSan build of the core, loaded into the stock interpreter with the runtime preloaded.
# GC=aggressive runs the suite with the collector never pausing (see spec/support/helper.lua).
sanitize:
	$(MAKE) --no-print-directory LUA=$(LUA) BUILD=build/$(LUA)-asan OPT="-O1" \
		EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
		LDFLAGS="-fsanitize=address,undefined" build/$(LUA)-asan/vidu/core.so
	$(RUN_ENV) LUA_CPATH="$(CURDIR)/build/$(LUA)-asan/?.so;;" VIDU_MEMCHECK=1 VIDU_GC=$(GC) \
		ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
		LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
		$(LUA) $(BUSTED) --cpath="build/$(LUA)-asan/?.so" $(BUSTED_ARGS)

demo: $(CORE)
	$(RUN_ENV) $(LUA) examples/demo.lua $(PROVIDER)

bench: $(CORE)
	@for b in bench/*.lua; do echo "== $$b"; $(RUN_ENV) $(LUA) $$b || exit 1; done

lint: deps
	luacheck lua spec bin examples bench

clean:
	rm -rf build

# Run from a checkout. `eval "$(make -s env)"` builds the core if needed (its output goes to
# stderr) and prints the shell lines that put this checkout's lua/, its core for $(LUA) and bin/
# first on LUA_PATH, LUA_CPATH and PATH; then any script runs from anywhere:
# `lua5.4 examples/demo.lua`. `make run ARGS='script.lua args'` runs one script the same way.
.PHONY: env run
env:
	@$(MAKE) -s --no-print-directory LUA=$(LUA) $(CORE) >&2
	@echo "export LUA_PATH='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;'\"\$${LUA_PATH:-;}\""
	@echo "export LUA_CPATH='$(CURDIR)/$(BUILD)/?.so;'\"\$${LUA_CPATH:-;}\""
	@echo "export PATH='$(CURDIR)/bin:'\"\$$PATH\""
	@echo "export VIDU_LUA='$(LUA)'"

run: $(CORE)
	$(RUN_ENV) $(LUA) $(ARGS)

# The API reference: `make doc` writes build/doc/index.html from the LDoc comments of lua/
# (config.ld), with Debian's lua-ldoc, installed here when missing. `make doc-check` fails on a
# public function without a doc comment, naming each (file:line: name); see .ci/doc-check.lua.
.PHONY: doc doc-check
doc:
	@dpkg-query -W -f='$${Status}' lua-ldoc 2>/dev/null | grep -q "ok installed" || { \
		echo "make doc: installing lua-ldoc"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends lua-ldoc; \
	} || exit 1
	rm -rf build/doc
	ldoc .
	@test -f build/doc/index.html && echo "make doc: build/doc/index.html"

doc-check: deps
	$(LUA) .ci/doc-check.lua lua

# ---------------------------------------------------------------- fuzzing
# make fuzz [FUZZ_SECONDS=N] [FUZZ_TARGETS="image b64"]: the libFuzzer targets of fuzz/ (image
# header probe, strict base64 with the scalar and AVX2 paths compared, data: URIs, UTF-8, the
# streaming cutter of data: URIs in JSON), built with clang and ASan+UBSan over the plain-C half
# of the core; each runs N seconds in turn and prints its executions per second (fuzz/run.sh).
# clang and its compiler-rt (libFuzzer) are installed by this target alone, not by `make deps`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= image b64 data_uri utf8 elide
FUZZ_CC ?= clang
FUZZ_PKGS := clang libclang-rt-dev
FUZZ_BUILD := build/fuzz
FUZZ_SRC := csrc/b64.c csrc/image.c csrc/util.c
FUZZ_CFLAGS := -std=c99 -D_POSIX_C_SOURCE=200809L -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-DVIDU_B64_NO_LUA -DVIDU_IMAGE_NO_LUA -DVIDU_UTIL_NO_LUA $(WARN) $(EXTRA_CFLAGS) -Icsrc
FUZZ_DEPS_STAMP := build/.fuzz-deps-ok

.PHONY: fuzz fuzz-build fuzz-deps

fuzz: fuzz-build
	@sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-build: $(addprefix $(FUZZ_BUILD)/fuzz_,$(FUZZ_TARGETS))

fuzz-deps: $(FUZZ_DEPS_STAMP)

$(FUZZ_DEPS_STAMP): Makefile
	@missing=""; for p in $(FUZZ_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make fuzz: installing$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing \
			|| exit 1; \
	fi
	@mkdir -p $(dir $@) && touch $@

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(FUZZ_SRC) $(HDR) | $(FUZZ_DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_SRC) -o $@

# make test-hosts: spec/hosts/run.lua runs generations against the emulator in headless Neovim
# (vidu.hosts.luv), nginx with its Lua module (vidu.hosts.ngx) and examples/host.c (a 60 fps
# frame loop), asserting completion and no crash, printing timings. Neovim comes from Debian
# (installed like `deps`: never removing anything). nginx's Lua module does not: Debian's
# libnginx-mod-http-lua needs luajit2, which conflicts with the luajit and libluajit-5.1-dev
# that `deps` installs, so installing it would remove them. Instead its packages are fetched
# with `apt-get download` and unpacked into build/hosts/root, and nginx runs from there with
# luajit2's library on LD_LIBRARY_PATH: nothing is installed or removed, on a fresh machine or
# a user's, and the LuaJIT build of vidu.core loads into luajit2 unchanged.
HOSTS_DEBS := nginx libnginx-mod-http-lua libnginx-mod-http-ndk libluajit2-5.1-2 \
	lua-resty-core lua-resty-lrucache
HOSTS_ROOT := build/hosts/root

$(HOSTS_ROOT)/.ok: | $(DEPS_STAMP)
	rm -rf build/hosts/debs $(HOSTS_ROOT) && mkdir -p build/hosts/debs $(HOSTS_ROOT)
	cd build/hosts/debs && { apt-get download $(HOSTS_DEBS) 2>/dev/null || \
		{ SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; $$SUDO apt-get update -qq && \
		apt-get download $(HOSTS_DEBS); }; }
	for f in build/hosts/debs/*.deb; do dpkg-deb -x "$$f" $(HOSTS_ROOT) || exit 1; done
	@touch $@

build/hosts/host: examples/host.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L -g -O2 $(WARN) $(EXTRA_CFLAGS) \
		$$(pkg-config --cflags lua5.4) $< -o $@ $$(pkg-config --libs lua5.4) -lm

test-hosts: $(HOSTS_ROOT)/.ok build/hosts/host
	@command -v nvim >/dev/null || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq || exit 1; \
		if $$SUDO apt-get install -s --no-install-recommends neovim | grep '^Remv'; then \
			echo "test-hosts: installing neovim would remove the packages above; not done"; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
			--no-remove neovim; }
	$(MAKE) --no-print-directory LUA=lua5.4
	$(MAKE) --no-print-directory LUA=luajit
	LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" \
		LUA_CPATH="$(CURDIR)/build/lua5.4/?.so;;" VIDU_LUA=lua5.4 lua5.4 spec/hosts/run.lua

# The contact sheet (`vidu report`) in a real browser: headless Chromium from Debian, installed
# here rather than by `make deps`, so only this target pays for it. Saves build/report.png.
.PHONY: test-report
test-report: $(CORE)
	@dpkg-query -W -f='$${Status}' chromium 2>/dev/null | grep -q "ok installed" || { \
		echo "make test-report: installing chromium"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium \
			|| exit 1; }
	$(RUN_ENV) $(LUA) $(BUSTED) --cpath="$(BUILD)/?.so" --pattern=_browser spec/browser

# The official fal and WaveSpeed JavaScript SDKs against the emulator (.ci/sdk-check.js):
# installs them into build/sdk with npm (Node.js is installed from Debian when missing), starts
# an emulator, runs one generation with each and prints the outcome ("N passed, N failed").
SDK_PKGS ?= @fal-ai/client@1.10.1 wavespeed@0.3.2
SDK_STAMP := build/sdk/.ok-$(subst /,_,$(subst @,,$(subst $(eval) ,-,$(SDK_PKGS))))
.PHONY: sdk-check sdk-install
sdk-check: $(CORE) sdk-install
	$(RUN_ENV) NODE_PATH="$(CURDIR)/build/sdk/node_modules" node .ci/sdk-check.js

# Node.js and npm (from Debian when missing) and the SDKs of SDK_PKGS in build/sdk, once per list.
sdk-install: $(SDK_STAMP)

$(SDK_STAMP):
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "make sdk-check: installing nodejs and npm"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends nodejs npm; \
	} || exit 1
	@mkdir -p build/sdk
	npm install --prefix build/sdk --no-save --no-package-lock --no-audit --no-fund --loglevel=error $(SDK_PKGS)
	@rm -f build/sdk/.ok-* && touch $@

# make faults: the fault matrix against the emulator (bench/faults/run.lua, issue 9): every
# fault kind the emulator has x every provider x submit, poll, result (fal) and download x once
# and persistent, through the public client API; prints one row per case (recovered or the
# error, submit POSTs the emulator logged, tasks it created) and a summary. It asserts nothing;
# spec/faults_spec.lua asserts the rules. FAULTS_PROVIDERS, FAULTS_PHASES, FAULTS_KINDS and
# FAULTS_MODES (space-separated names) narrow it.
.PHONY: faults
faults: $(CORE)
	$(RUN_ENV) FAULTS_PROVIDERS="$(FAULTS_PROVIDERS)" FAULTS_PHASES="$(FAULTS_PHASES)" \
		FAULTS_KINDS="$(FAULTS_KINDS)" FAULTS_MODES="$(FAULTS_MODES)" $(LUA) bench/faults/run.lua

# make bench-photo: bench/generations.lua with a photo-sized image (issue 10): a 1920x1080 JPEG
# of about 450 KB made by ffmpeg into build/photo.jpg, submitted by path by 1,000 concurrent
# generations (10 s each on the emulator), inline (vidu, with upload = false: by default an
# image sent more than once goes up once) and through the upload API (fal).
# Prints peak RSS and client CPU per run; asserts nothing.
.PHONY: bench-photo
build/photo.jpg: | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1920x1080 -vf noise=alls=9 -frames:v 1 -q:v 3 $@

bench-photo: $(CORE) build/photo.jpg
	@for p in vidu fal; do echo "== bench/generations.lua 1000 10 $$p, build/photo.jpg"; \
		up=; if [ $$p = vidu ]; then up=0; fi; \
		$(RUN_ENV) VIDU_BENCH_IMAGE=build/photo.jpg VIDU_BENCH_UPLOAD=$$up $(LUA) bench/generations.lua 1000 10 $$p || exit 1; done

# make bench-compare [N=200] [DURATIONS=fixed|lognormal|both]: lua-vidu (fal and wavespeed)
# against the official fal and WaveSpeed JS SDKs of SDK_PKGS on the same work, one emulator,
# N concurrent generations of the photo-sized JPEG of bench-photo; prints wall, CPU, peak RSS,
# requests/generation, finish->known and the ratios lua/SDK (bench/compare/run.js). Asserts nothing.
N ?= 200
DURATIONS ?= fixed
BENCH_IMAGE := build/photo.jpg
.PHONY: bench-compare

bench-compare: $(CORE) sdk-install $(BENCH_IMAGE)
	$(RUN_ENV) NODE_PATH="$(CURDIR)/build/sdk/node_modules" N=$(N) DURATIONS=$(DURATIONS) \
		IMAGE="$(CURDIR)/$(BENCH_IMAGE)" node bench/compare/run.js
