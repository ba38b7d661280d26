# Builds, tests and runs ONE chapter's code. The top-level Makefile calls it
# from the repository's root for each chapter it is asked about:
#
#   make -f mk/chapter.mk SRC=solutions/01-blocking CHAPTER=01-blocking \
#        OUT=build/solutions/01-blocking  build|check|memcheck|run
#
# SRC may be any folder with a chapter's files (the starter in chapters/, or a
# starter with one exercise cut, made by tools/check-starters.sh); the tests
# always come from tests/$(CHAPTER), and tests/all-chapters runs against every
# chapter. SAN=1 builds with ASan and UBSan.
#
# By default a chapter builds one program, echo_server, from all of its .c
# files and common/. A chapter that builds more says so in its build.mk, and
# tests that link chapter code (unit tests) say so in tests/NN-slug/build.mk.
# A threaded chapter sets RACE_CHECK := helgrind there, and make memcheck
# runs its tests once more with the servers under Helgrind.

ifeq ($(and $(SRC),$(CHAPTER),$(OUT)),)
$(error mk/chapter.mk needs SRC, CHAPTER and OUT; use the top-level Makefile)
endif

HOST ?= 127.0.0.1
PORT ?= 8000
# The CPU to build for: x86_64, aarch64... By default the compiler's. Another
# one (make check ARCH=aarch64) means a cross build, whose compiler and test
# runner mk/cross-ARCH.mk sets up.
ifneq ($(ARCH),)
ifneq ($(ARCH),$(shell uname -m))
include mk/cross-$(ARCH).mk
endif
endif
ARCH ?= $(firstword $(subst -, ,$(shell $(CC) -dumpmachine)))
TESTS_DIR := tests/$(CHAPTER)

PROGRAMS := echo_server
echo_server_SRCS := $(notdir $(wildcard $(SRC)/*.c))
CHAPTER_STD := -std=c11
-include $(SRC)/build.mk
# The suites in tests/all-chapters run against every chapter.
SHARED_TESTS := $(basename $(notdir $(wildcard tests/all-chapters/test_*.c)))
TESTS := $(basename $(notdir $(wildcard $(TESTS_DIR)/test_*.c))) $(SHARED_TESTS)
-include $(TESTS_DIR)/build.mk
# A chapter's tests/NN-slug/build.mk may name suites shared with other
# chapters (USES_SUITES := coroutines) and what each test links
# (test_co_LINK := co.c: chapter sources; test_x_HELPERS := regs: .c or .S
# files from its own tests folder).
TESTS += $(foreach suite,$(USES_SUITES),$(basename $(notdir $(wildcard tests/$(suite)/test_*.c))))
# Private tests, for grading (make grade): PRIVATE_TESTS/CHAPTER/test_*.c run
# like the chapter's own, and a build.mk there may say what they link.
ifneq ($(PRIVATE_TESTS),)
PRIVATE_DIR := $(PRIVATE_TESTS)/$(CHAPTER)
TESTS += $(basename $(notdir $(wildcard $(PRIVATE_DIR)/test_*.c)))
-include $(PRIVATE_DIR)/build.mk
endif

WARNINGS := -Wall -Wextra -Werror
# Valgrind 3.19 (Debian 12) cannot read the DWARF 5 that clang writes by
# default; DWARF 4 works with every tool here.
DEBUG := -g -gdwarf-4
ifeq ($(SAN),1)
SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
endif
# CFLAGS and LDFLAGS from the command line come last, so they can add to these.
# The chapter's own headers are found for #include "..." only (-iquote): its
# sched.h must not stand in for the C library's <sched.h>, which <pthread.h>
# includes.
CHAPTER_CFLAGS = $(CHAPTER_STD) -O2 $(DEBUG) $(WARNINGS) $(SANITIZE) -MMD -MP -Icommon -iquote $(SRC) \
	$(CFLAGS)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)
TEST_CFLAGS = -std=gnu11 -O2 $(DEBUG) $(WARNINGS) $(SANITIZE) -MMD -MP -Itests/lib -Icommon -iquote $(SRC) \
	$(CHECK_CFLAGS) $(CFLAGS)
LINK = $(CC) $(SANITIZE) $(LDFLAGS)

objects = $(patsubst %,$(OUT)/obj/%.o,$(basename $(1)))
COMMON_OBJS := $(patsubst common/%.c,$(OUT)/common/%.o,$(wildcard common/*.c))
PROGRAM_BINS := $(addprefix $(OUT)/,$(PROGRAMS))
TEST_BINS := $(addprefix $(OUT)/tests/,$(TESTS))
# The harness, linked into every test binary; the shims, preloaded into
# servers (the short-I/O shim when a test asks, the crash reporter always).
HARNESS_OBJS := $(patsubst %,$(OUT)/lib/%.o,harness servers clients trace promises crash_report)
SHORT_IO := $(OUT)/lib/short_io.so
CRASH_REPORT := $(OUT)/lib/crash_report.so

# Rebuild everything when the compiler or the flags change (make CC=clang
# after a gcc build): the objects depend on a file that records them. Where
# the chapter's files are is left out (SRC): make mistakes builds a patched
# copy of a chapter on the objects of its solution's tests.
FLAGS_STAMP := $(OUT)/flags
FLAGS_NOW := $(subst $(SRC),SRC,$(CC) | $(CHAPTER_CFLAGS) | $(TEST_CFLAGS) | $(LINK))
$(shell mkdir -p $(OUT) && echo '$(FLAGS_NOW)' | cmp -s - $(FLAGS_STAMP) || \
	echo '$(FLAGS_NOW)' > $(FLAGS_STAMP))

.PHONY: build check memcheck run
.DEFAULT_GOAL := build
build: $(PROGRAM_BINS) $(TEST_BINS) $(SHORT_IO) $(CRASH_REPORT)

$(OUT)/obj/%.o: $(SRC)/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CHAPTER_CFLAGS) -c $< -o $@

$(OUT)/obj/%.o: $(SRC)/%.S $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CHAPTER_CFLAGS) -c $< -o $@

$(OUT)/common/%.o: common/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CHAPTER_CFLAGS) -c $< -o $@

$(OUT)/tests/%.o: $(TESTS_DIR)/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -c $< -o $@

$(OUT)/tests/%.o: $(TESTS_DIR)/%.S $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -c $< -o $@

$(OUT)/tests/%.o: tests/all-chapters/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -c $< -o $@

ifneq ($(PRIVATE_DIR),)
$(OUT)/tests/%.o: $(PRIVATE_DIR)/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -c $< -o $@
endif

# The suites a chapter borrows (USES_SUITES): tests/coroutines, or another
# chapter's folder.
define borrowed_suite
$$(OUT)/tests/%.o: tests/$(1)/%.c $$(FLAGS_STAMP)
	@mkdir -p $$(@D)
	$$(CC) $$(TEST_CFLAGS) -c $$< -o $$@
endef
$(foreach suite,$(USES_SUITES),$(eval $(call borrowed_suite,$(suite))))

$(OUT)/lib/%.o: tests/lib/%.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -c $< -o $@

# The shim is preloaded into servers; it is not built with the sanitizers,
# whose runtimes insist on being loaded first.
$(SHORT_IO): tests/lib/short_io.c $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 $(DEBUG) $(WARNINGS) -fPIC -shared $< -o $@ -ldl

$(CRASH_REPORT): tests/lib/crash_preload.c tests/lib/crash_report.c tests/lib/crash_report.h $(FLAGS_STAMP)
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 $(DEBUG) $(WARNINGS) -fPIC -shared $(filter %.c,$^) -o $@

define program_rule
$(OUT)/$(1): $(call objects,$($(1)_SRCS)) $(COMMON_OBJS)
	$$(LINK) $$^ -o $$@ $($(1)_LIBS)
endef
$(foreach p,$(PROGRAMS),$(eval $(call program_rule,$(p))))

define test_rule
$(OUT)/tests/$(1): $(OUT)/tests/$(1).o $(HARNESS_OBJS) \
		$(call objects,$($(1)_LINK)) $(patsubst %,$(OUT)/tests/%.o,$($(1)_HELPERS)) $(COMMON_OBJS)
	$$(LINK) $$^ -o $$@ $(CHECK_LIBS) -pthread $($(1)_LIBS)
endef
$(foreach t,$(TESTS),$(eval $(call test_rule,$(t))))

-include $(shell find $(OUT) -name '*.d' 2>/dev/null)

# What a test binary needs to know; see tests/lib/harness.h.
HANG_FILE := $(OUT)/hung
TEST_ENV = TH_SERVER=$(abspath $(OUT)/echo_server) TH_SHORT_IO=$(abspath $(SHORT_IO)) \
	TH_CRASH_REPORT=$(abspath $(CRASH_REPORT)) TH_HANG_FILE=$(abspath $(HANG_FILE)) \
	TH_LESSON=chapters/$(CHAPTER)/README.md TH_CHAPTER=$(CHAPTER)
# Sanitizer reports go to the server's stderr, which a failing test shows.
# handle_segv=0: a SIGSEGV stays a signal (chapter 04 tests that a stack
# overflow ends in one), instead of ASan's report and exit status 1.
# ASan's allocator and checks slow the code down, allocation most of all
# (chapter 03's coroutine tests, eleven thousand 64-KiB stacks among them,
# took 2.0 s instead of 0.27), so deadlines stretch, as under Valgrind and
# qemu.
ifeq ($(SAN),1)
TEST_ENV += ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1:handle_segv=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 TH_TIME_SCALE=3 CK_TIMEOUT_MULTIPLIER=3
endif

# Run every test binary; report the chapter as failed if any one failed.
# A hang in one test shortens the waits of the rest (tests/lib/harness.c).
# A chapter's build.mk may name tests to run once more against a mode of its
# server: RERUN_TESTS, with the server's arguments RERUN_ARGS; only once all
# the rest pass, as a failure there would most likely be the same again.
RERUN_BINS = $(addprefix $(OUT)/tests/,$(RERUN_TESTS))
define run_tests
	@rm -f $(HANG_FILE) $(HANG_FILE).server; failed=0; for t in $(TEST_BINS); do \
		echo "== $(CHAPTER) ($(SRC)): $${t##*/}$(1)"; \
		$(TEST_ENV) $(2) $(TEST_RUNNER) $$t || failed=1; \
	done; \
	if [ $$failed = 1 ] && [ -n "$(RERUN_TESTS)" ]; then \
		echo "== $(CHAPTER): not run until the tests above pass: $(RERUN_TESTS), the server with $(RERUN_ARGS)"; \
	elif [ -n "$(RERUN_TESTS)" ]; then for t in $(RERUN_BINS); do \
		echo "== $(CHAPTER) ($(SRC)): $${t##*/}, the server with $(RERUN_ARGS)$(1)"; \
		$(TEST_ENV) TH_SERVER_ARGS="$(RERUN_ARGS)" $(2) $(TEST_RUNNER) $$t || failed=1; \
	done; fi; exit $$failed
endef

# The tests run one binary at a time, but the build before them uses every
# core, each file's compiler output kept together (unless make was given
# -j already, whose job slots the build then shares).
JOBS := $(shell nproc 2>/dev/null || echo 1)
parallel_build = $(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) \
	$(if $(filter -j%,$(MAKEFLAGS)),,-j$(JOBS)) --output-sync=target build

# A chapter whose tests all pass is marked (make run in a handout runs the
# most advanced one).
check:
	@$(parallel_build)
	@rm -f $(OUT)/passed
	$(call run_tests,,)
	@touch $(OUT)/passed

# Every test binary and every server it starts run under Valgrind; an error
# or a leak anywhere makes the server exit 99, or the test binary fail.
# A leak is memory nothing points to any more (definitely or indirectly
# lost). Memory of a thread still running at exit shows as "possibly lost"
# (glibc's thread descriptor is reached only from the thread itself), so
# that kind is left out for the threaded chapters' sake.
VALGRIND := valgrind -q --error-exitcode=99
MEMCHECK := $(VALGRIND) --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect
HELGRIND := $(VALGRIND) --tool=helgrind
SLOW_TOOL_ENV := CK_TIMEOUT_MULTIPLIER=10 TH_TIME_SCALE=10
memcheck:
	@$(parallel_build)
	$(call run_tests, under Valgrind,CK_FORK=no $(SLOW_TOOL_ENV) TH_WRAPPER="$(MEMCHECK)" $(MEMCHECK))
ifeq ($(RACE_CHECK),helgrind)
	$(call run_tests, with the servers under Helgrind,$(SLOW_TOOL_ENV) TH_WRAPPER="$(HELGRIND)")
endif

run: $(OUT)/echo_server
	exec $(OUT)/echo_server -H $(HOST) -p $(PORT)
