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
#   make test-report  the contact sheet in headless Chromium (installs chromium)

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
	$(shell pkg-config --cflags $(LUA_PC) libcurl 2>/dev/null)
LDLIBS = $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)

SRC := $(wildcard csrc/*.c)
HDR := $(wildcard csrc/*.h)
OBJ := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SRC))

# Debian packages the project needs. Each target that needs them depends on `deps`, which only
# calls apt-get when something is missing, so a fresh machine needs nothing but `make`.
PKGS := gcc make pkg-config lua5.4 liblua5.4-dev luajit libluajit-5.1-dev \
	lua5.1 liblua5.1-0-dev lua5.3 liblua5.3-dev \
	libcurl4-openssl-dev lua-cjson lua-luv lua-busted lua-check luarocks valgrind openssl ffmpeg
DEPS_STAMP := build/.deps-ok

# Environment every Lua process of the project runs with: our modules first.
RUN_ENV = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;" \
	LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;" VIDU_LUA="$(LUA)"

.PHONY: all deps test memcheck sanitize demo bench lint clean

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
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing \
			|| exit 1; \
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
