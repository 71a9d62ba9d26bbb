# reflinkfs build.  GNU make; sources are found by wildcard, so adding a .c
# file to one of the directories below needs no change here.
#
#   make / make all    release library build/libreflinkfs.a (+ build/reflinkfs
#                      when src/cli/*.c exists, + build/engine-demo when
#                      tools/engine_demo.c exists)
#   make test          install deps, build and run every test (ASan+UBSan),
#                      and the unit tests that start threads also under
#                      ThreadSanitizer; TEST=name runs one (name with or
#                      without "test_")
#   make bench         build bench/*.c (-O2, release library) and run bench/run.sh
#   make demo          install deps, build, run scripts/demo.sh
#   make valgrind      unit tests without sanitizers, under valgrind
#   make tsan          unit tests under ThreadSanitizer (TEST=name runs one)
#   make install       PREFIX=/usr/local, DESTDIR supported
#   make clean
#   make format-check  clang-format --dry-run on all C sources (needs .clang-format)

SHELL := /bin/bash
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
# Keep every object (test helpers are only reached through pattern rules).
.SECONDARY:
.SUFFIXES:

CC      ?= cc
AR      ?= ar
PKG_CONFIG ?= pkg-config
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= /sbin
DESTDIR ?=

B := build

BASE_CFLAGS := -std=c17 -Wall -Wextra -Werror -D_GNU_SOURCE -Iinclude -Isrc -pthread
DEP_FLAGS    = -MMD -MP
REL_CFLAGS  := $(BASE_CFLAGS) -O2 -g
ASAN_FLAGS  := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer
# RFS_DEBUG: debug builds check lock ownership (src/util/lockcheck.h);
# the release build does not.
DEBUG_FLAGS := -DRFS_DEBUG
ASAN_CFLAGS := $(BASE_CFLAGS) $(ASAN_FLAGS) $(DEBUG_FLAGS)
VG_CFLAGS   := $(BASE_CFLAGS) -O1 -g $(DEBUG_FLAGS)
# ThreadSanitizer (gcc, libtsan2); cannot be combined with ASan.
TSAN_FLAGS  := -O1 -g -fsanitize=thread -fno-omit-frame-pointer
TSAN_CFLAGS := $(BASE_CFLAGS) $(TSAN_FLAGS) $(DEBUG_FLAGS)
CPPFLAGS    ?=
CFLAGS      ?=
LDFLAGS     ?=

LIB_LIBS    := -lisal -lpthread
TEST_LIBS   := -lcmocka $(LIB_LIBS)
BENCH_LIBS  := -llmdb $(LIB_LIBS)
# Recursive (=) so pkg-config runs only when the CLI is actually linked.
FUSE_CFLAGS  = $(shell $(PKG_CONFIG) --cflags fuse3)
FUSE_LIBS    = $(shell $(PKG_CONFIG) --libs fuse3)

# ---------------------------------------------------------------- sources
LIB_SRCS   := $(wildcard src/util/*.c src/pool/*.c src/tree/*.c src/fs/*.c src/journal/*.c src/client/*.c)
CLI_SRCS   := $(wildcard src/cli/*.c)
BIN_SRCS   := $(if $(CLI_SRCS),$(CLI_SRCS) $(wildcard src/fuse/*.c))
DEMO_SRC   := $(wildcard tools/engine_demo.c)
# Shared helpers (not programs) linked into every test / bench program.
TEST_COMMON_SRCS  := $(wildcard tests/common/*.c)
BENCH_COMMON_SRCS := $(wildcard bench/common/*.c)
ALL_TEST_SRCS := $(sort $(wildcard tests/unit/test_*.c tests/*/test_*.c))
UNIT_TEST_SRCS := $(wildcard tests/unit/test_*.c)
# Unit tests that start threads: `make test` runs them under TSan too.
THREAD_TEST_ALL := $(if $(UNIT_TEST_SRCS),$(shell grep -l pthread_create $(UNIT_TEST_SRCS)))
INTEG_SCRIPTS := $(sort $(wildcard tests/integration/*.sh))
BENCH_SRCS := $(wildcard bench/*.c)

# TEST=name selects programs/scripts whose base name is name or test_name.
test_match = $(foreach f,$(1),$(if $(filter $(TEST) test_$(TEST),$(basename $(notdir $(f)))),$(f)))
ifdef TEST
TEST_SRCS    := $(call test_match,$(ALL_TEST_SRCS))
TEST_SCRIPTS := $(call test_match,$(INTEG_SCRIPTS))
TSAN_TEST_SRCS := $(call test_match,$(UNIT_TEST_SRCS))
THREAD_TEST_SRCS := $(call test_match,$(THREAD_TEST_ALL))
else
TEST_SRCS    := $(ALL_TEST_SRCS)
TEST_SCRIPTS := $(INTEG_SCRIPTS)
TSAN_TEST_SRCS := $(UNIT_TEST_SRCS)
THREAD_TEST_SRCS := $(THREAD_TEST_ALL)
endif

# ---------------------------------------------------------------- outputs
LIB       := $(B)/libreflinkfs.a
ASAN_LIB  := $(B)/asan/libreflinkfs.a
BIN       := $(if $(CLI_SRCS),$(B)/reflinkfs)
DEMO      := $(if $(DEMO_SRC),$(B)/engine-demo)

LIB_OBJS        := $(LIB_SRCS:%.c=$(B)/obj/%.o)
ASAN_LIB_OBJS   := $(LIB_SRCS:%.c=$(B)/asan/obj/%.o)
BIN_OBJS        := $(BIN_SRCS:%.c=$(B)/obj/%.o)
TEST_COMMON_ASAN_OBJS := $(TEST_COMMON_SRCS:%.c=$(B)/asan/obj/%.o)
TEST_COMMON_VG_OBJS   := $(TEST_COMMON_SRCS:%.c=$(B)/valgrind/obj/%.o)
TEST_COMMON_TSAN_OBJS := $(TEST_COMMON_SRCS:%.c=$(B)/tsan/obj/%.o)
BENCH_COMMON_OBJS     := $(BENCH_COMMON_SRCS:%.c=$(B)/obj/%.o)

# tests/unit/test_x.c -> build/asan/tests/unit/test_x
TEST_BINS     := $(TEST_SRCS:%.c=$(B)/asan/%)
ALL_TEST_BINS := $(ALL_TEST_SRCS:%.c=$(B)/asan/%)
VG_TEST_BINS  := $(UNIT_TEST_SRCS:%.c=$(B)/valgrind/%)
TSAN_TEST_BINS := $(TSAN_TEST_SRCS:%.c=$(B)/tsan/%)
THREAD_TEST_BINS := $(THREAD_TEST_SRCS:%.c=$(B)/tsan/%)
BENCH_BINS    := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRCS))

.PHONY: all lib asan-lib tests test test-build bench bench-build demo \
	valgrind valgrind-build tsan tsan-build deps install uninstall clean format-check

all: $(LIB) $(BIN) $(DEMO)
lib: $(LIB)
asan-lib: $(ASAN_LIB)

# ---------------------------------------------------------------- objects
$(B)/obj/src/cli/%.o: src/cli/%.c
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) $(FUSE_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(DEP_FLAGS) -c $< -o $@

$(B)/obj/src/fuse/%.o: src/fuse/%.c
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) $(FUSE_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(DEP_FLAGS) -c $< -o $@

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(DEP_FLAGS) -c $< -o $@

$(B)/asan/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ASAN_CFLAGS) -Itests $(CPPFLAGS) $(CFLAGS) $(DEP_FLAGS) -c $< -o $@

$(B)/valgrind/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(VG_CFLAGS) -Itests $(CPPFLAGS) $(CFLAGS) $(DEP_FLAGS) -c $< -o $@

$(B)/tsan/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(TSAN_CFLAGS) -Itests $(CPPFLAGS) $(CFLAGS) $(DEP_FLAGS) -c $< -o $@

# ---------------------------------------------------------------- libraries
$(LIB): $(LIB_OBJS)
	@mkdir -p $(@D)
	@rm -f $@
	$(AR) rcs $@ $^

$(ASAN_LIB): $(ASAN_LIB_OBJS)
	@mkdir -p $(@D)
	@rm -f $@
	$(AR) rcs $@ $^

# Valgrind builds link the release objects, recompiled without sanitizers.
VG_LIB_OBJS := $(LIB_SRCS:%.c=$(B)/valgrind/obj/%.o)
VG_LIB      := $(B)/valgrind/libreflinkfs.a
$(VG_LIB): $(VG_LIB_OBJS)
	@mkdir -p $(@D)
	@rm -f $@
	$(AR) rcs $@ $^

TSAN_LIB_OBJS := $(LIB_SRCS:%.c=$(B)/tsan/obj/%.o)
TSAN_LIB      := $(B)/tsan/libreflinkfs.a
$(TSAN_LIB): $(TSAN_LIB_OBJS)
	@mkdir -p $(@D)
	@rm -f $@
	$(AR) rcs $@ $^

# ---------------------------------------------------------------- programs
$(B)/reflinkfs: $(BIN_OBJS) $(LIB)
	$(CC) $(REL_CFLAGS) $(LDFLAGS) -o $@ $(BIN_OBJS) $(LIB) $(FUSE_LIBS) -luring $(LIB_LIBS)

$(B)/engine-demo: tools/engine_demo.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) $(CPPFLAGS) $(CFLAGS) $(DEP_FLAGS) -MF $@.d $(LDFLAGS) \
		-o $@ $< $(LIB) $(LIB_LIBS)

# One binary per test source, compiled and linked in one step.
$(B)/asan/tests/%: tests/%.c $(TEST_COMMON_ASAN_OBJS) $(ASAN_LIB)
	@mkdir -p $(@D)
	$(CC) $(ASAN_CFLAGS) -Itests $(CPPFLAGS) $(CFLAGS) $(DEP_FLAGS) -MF $@.d $(LDFLAGS) \
		-o $@ $< $(TEST_COMMON_ASAN_OBJS) $(ASAN_LIB) $(TEST_LIBS)

$(B)/valgrind/tests/%: tests/%.c $(TEST_COMMON_VG_OBJS) $(VG_LIB)
	@mkdir -p $(@D)
	$(CC) $(VG_CFLAGS) -Itests $(CPPFLAGS) $(CFLAGS) $(DEP_FLAGS) -MF $@.d $(LDFLAGS) \
		-o $@ $< $(TEST_COMMON_VG_OBJS) $(VG_LIB) $(TEST_LIBS)

$(B)/tsan/tests/%: tests/%.c $(TEST_COMMON_TSAN_OBJS) $(TSAN_LIB)
	@mkdir -p $(@D)
	$(CC) $(TSAN_CFLAGS) -Itests $(CPPFLAGS) $(CFLAGS) $(DEP_FLAGS) -MF $@.d $(LDFLAGS) \
		-o $@ $< $(TEST_COMMON_TSAN_OBJS) $(TSAN_LIB) $(TEST_LIBS)

$(B)/bench/%: bench/%.c $(BENCH_COMMON_OBJS) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) -Ibench $(CPPFLAGS) $(CFLAGS) $(DEP_FLAGS) -MF $@.d $(LDFLAGS) \
		-o $@ $< $(BENCH_COMMON_OBJS) $(LIB) $(BENCH_LIBS)

# ---------------------------------------------------------------- test
deps:
	@bash scripts/install-deps.sh

tests: $(ALL_TEST_BINS)

# Everything is built (release, ASan, the benchmarks), so a source that does not compile
# fails `make test` even when no test covers it yet; the integration
# scripts need the release binary anyway.
test-build: all $(ASAN_LIB) $(TEST_BINS) $(THREAD_TEST_BINS) $(BENCH_BINS)
	@:

# TSan: any data race, lock-order inversion or misuse of a lock fails the
# test.  setarch -R: gcc 12's TSan needs the memory layout it expects,
# which the high mmap randomisation of some kernels breaks.
TSAN_OPTS := TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 exitcode=66" \
	RFS_TSAN_WRAPPER="setarch $$(uname -m) -R"

TEST_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $(TSAN_OPTS) \
	RFS_ROOT=$(CURDIR) RFS_BIN=$(CURDIR)/$(B)/reflinkfs RFS_BUILD=$(CURDIR)/$(B)

# A program that fails to build is counted as failed, and any other build
# error counts as one more failure ("build"); make -k builds all it can, so
# the summary line is always printed.
test:
	@bash scripts/install-deps.sh
ifdef TEST
	@if [ -z "$(strip $(TEST_SRCS) $(TEST_SCRIPTS))" ]; then \
		echo "no test program or script named '$(TEST)'"; echo "0 passed, 1 failed"; exit 1; fi
endif
	@bf=; $(MAKE) --no-print-directory -k test-build || bf=1; \
	$(TEST_ENV) RFS_BUILD_FAILED=$$bf bash scripts/run-tests.sh $(TEST_BINS) \
		$(THREAD_TEST_BINS) $(TEST_SCRIPTS)

# ---------------------------------------------------------------- valgrind
valgrind-build: $(VG_LIB) $(VG_TEST_BINS)
	@:

valgrind:
	@bf=; $(MAKE) --no-print-directory -k valgrind-build || bf=1; \
	RFS_BUILD_FAILED=$$bf RFS_ROOT=$(CURDIR) RFS_BUILD=$(CURDIR)/$(B) \
	RFS_WRAPPER="valgrind -q --leak-check=full --error-exitcode=1" \
		bash scripts/run-tests.sh $(VG_TEST_BINS)

# ---------------------------------------------------------------- tsan
# Every unit test under ThreadSanitizer (see TSAN_OPTS above).
TSAN_ENV := $(TSAN_OPTS) RFS_ROOT=$(CURDIR) RFS_BUILD=$(CURDIR)/$(B)

tsan-build: $(TSAN_LIB) $(TSAN_TEST_BINS)
	@:

tsan:
	@bash scripts/install-deps.sh
ifdef TEST
	@if [ -z "$(strip $(TSAN_TEST_SRCS))" ]; then \
		echo "no unit test named '$(TEST)'"; echo "0 passed, 1 failed"; exit 1; fi
endif
	@bf=; $(MAKE) --no-print-directory -k tsan-build || bf=1; \
	$(TSAN_ENV) RFS_BUILD_FAILED=$$bf bash scripts/run-tests.sh $(TSAN_TEST_BINS)

# ---------------------------------------------------------------- bench
bench-build: $(LIB) $(BENCH_BINS)

bench: bench-build
	@RFS_ROOT=$(CURDIR) RFS_BIN=$(CURDIR)/$(B)/reflinkfs RFS_BENCH_DIR=$(CURDIR)/$(B)/bench \
		bash bench/run.sh

# ---------------------------------------------------------------- demo
demo:
	@bash scripts/install-deps.sh
	@$(MAKE) --no-print-directory all
	@RFS_ROOT=$(CURDIR) RFS_BUILD=$(CURDIR)/$(B) bash scripts/demo.sh

# ---------------------------------------------------------------- install
install: all
ifneq ($(BIN),)
	install -D -m 0755 $(B)/reflinkfs $(DESTDIR)$(BINDIR)/reflinkfs
	install -d $(DESTDIR)$(SBINDIR)
	ln -sfn $(BINDIR)/reflinkfs $(DESTDIR)$(SBINDIR)/mount.fuse.reflinkfs
else
	@echo "install: build/reflinkfs does not exist yet (no src/cli/*.c); nothing to install"
endif

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/reflinkfs $(DESTDIR)$(SBINDIR)/mount.fuse.reflinkfs

# ---------------------------------------------------------------- misc
clean:
	rm -rf $(B)

FORMAT_SRCS := $(sort $(wildcard src/*/*.c include/reflinkfs/*.h src/*/*.h tests/*/*.c tests/*/*.h bench/*.c tools/*.c))
format-check:
	@if [ ! -f .clang-format ]; then echo "format-check: no .clang-format, skipped"; \
	elif ! command -v clang-format >/dev/null; then echo "format-check: clang-format not installed, skipped"; \
	else clang-format --dry-run --Werror $(FORMAT_SRCS); fi

-include $(wildcard $(B)/obj/*/*/*.d $(B)/obj/*/*.d $(B)/asan/obj/*/*/*.d $(B)/asan/obj/*/*.d \
	$(B)/valgrind/obj/*/*/*.d $(B)/valgrind/obj/*/*.d \
	$(B)/tsan/obj/*/*/*.d $(B)/tsan/obj/*/*.d \
	$(B)/asan/tests/*/*.d $(B)/valgrind/tests/*/*.d $(B)/tsan/tests/*/*.d $(B)/bench/*.d $(B)/*.d)

# ---------------------------------------------------------------- fuzzing
# libFuzzer on tree nodes read from disk (tests/fuzz/fuzz_node.h), on
# superblocks (fuzz_super.h) and on inode record values (fuzz_irec.h).  Needs
# clang (Debian: clang, libclang-rt-14-dev).  Inputs that crash are saved
# into tests/fuzz/corpus/, corpus-super/, corpus-irec/ (commit them: `make
# test` replays those folders).
FUZZ_CC   ?= clang
FUZZ_TIME ?= 60
.PHONY: fuzz
fuzz:
	@command -v $(FUZZ_CC) >/dev/null || { echo "make fuzz needs clang: apt-get install clang libclang-rt-14-dev"; exit 1; }
	@mkdir -p $(B)/fuzz-corpus tests/fuzz/corpus
	$(FUZZ_CC) -std=c17 -g -O1 -D_GNU_SOURCE $(DEBUG_FLAGS) -Iinclude -Isrc -Itests -pthread \
		-fsanitize=fuzzer,address,undefined \
		$(wildcard src/util/*.c src/pool/*.c src/tree/*.c) tests/fuzz/fuzz_node.c \
		-o $(B)/fuzz_node -lisal -lpthread
	$(FUZZ_CC) -std=c17 -g -O1 -D_GNU_SOURCE $(DEBUG_FLAGS) -Iinclude -Isrc -Itests -pthread \
		-fsanitize=fuzzer,address,undefined \
		$(wildcard src/util/*.c src/pool/*.c src/tree/*.c) tests/fuzz/fuzz_super.c \
		-o $(B)/fuzz_super -lisal -lpthread
	$(FUZZ_CC) -std=c17 -g -O1 -D_GNU_SOURCE $(DEBUG_FLAGS) -Iinclude -Isrc -Itests -pthread \
		-fsanitize=fuzzer,address,undefined \
		src/util/log.c src/fs/irec.c tests/fuzz/fuzz_irec.c \
		-o $(B)/fuzz_irec
	@mkdir -p $(B)/fuzz-corpus-super tests/fuzz/corpus-super
	@mkdir -p $(B)/fuzz-corpus-irec tests/fuzz/corpus-irec
	$(B)/fuzz_node -max_total_time=$(FUZZ_TIME) -max_len=4097 \
		-artifact_prefix=tests/fuzz/corpus/ $(B)/fuzz-corpus
	$(B)/fuzz_super -max_total_time=$(FUZZ_TIME) -max_len=169 \
		-artifact_prefix=tests/fuzz/corpus-super/ $(B)/fuzz-corpus-super
	$(B)/fuzz_irec -max_total_time=$(FUZZ_TIME) -max_len=1024 \
		-artifact_prefix=tests/fuzz/corpus-irec/ $(B)/fuzz-corpus-irec
