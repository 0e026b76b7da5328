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
PKGS := gcc make pkg-config lua5.4 liblua5.4-dev luajit libluajit-5.1-dev \
	lua5.1 liblua5.1-0-dev lua5.3 liblua5.3-dev \
	libcurl4-openssl-dev libssl-dev lua-cjson lua-luv lua-busted lua-check luarocks valgrind openssl ffmpeg
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

# The official fal and WaveSpeed JavaScript SDKs against the emulator (.ci/sdk-check.js):
# installs them into build/sdk with npm (Node.js is installed from Debian when missing), starts
# an emulator, runs one generation with each and prints the outcome ("N passed, N failed").
SDK_PKGS ?= @fal-ai/client@1.10.1 wavespeed@0.3.2
.PHONY: sdk-check
sdk-check: $(CORE)
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "make sdk-check: installing nodejs and npm"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends nodejs npm; \
	} || exit 1
	@mkdir -p build/sdk
	npm install --prefix build/sdk --no-save --no-package-lock --no-audit --no-fund --loglevel=error $(SDK_PKGS)
	$(RUN_ENV) NODE_PATH="$(CURDIR)/build/sdk/node_modules" node .ci/sdk-check.js
