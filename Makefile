# Green threads from scratch: build, test, run and measure every chapter.
# `make help` lists the targets. CH=NN picks one chapter, IMPL=chapters tests
# the starter code (yours) instead of the reference solutions.

CH ?=
HOST ?= 127.0.0.1
PORT ?= 8000

# The course repository has the reference solutions; a students' handout
# (make handout) has only chapters/, and there every target works on the
# student's code.
HANDOUT := $(if $(wildcard solutions/[0-9][0-9]-*),,yes)
IMPL ?= $(if $(HANDOUT),chapters,solutions)
# What only the course repository can do.
AUTHOR_GOALS := check-starters check-handout check-grading starters mistakes handout grade gradescope
ifneq ($(and $(HANDOUT),$(filter $(AUTHOR_GOALS),$(MAKECMDGOALS))),)
$(error make $(filter $(AUTHOR_GOALS),$(MAKECMDGOALS)) needs the course repository, with its \
	solutions/; this is a students' handout)
endif
ALL_CHAPTERS := $(sort $(notdir $(wildcard $(IMPL)/[0-9][0-9]-*)))
ifeq ($(ALL_CHAPTERS),)
ifneq ($(filter-out progress help clean,$(or $(MAKECMDGOALS),build)),)
$(error no chapter folders in $(IMPL)/; to test the starters, use IMPL=chapters)
endif
endif
STUDENT_CHAPTERS := $(sort $(notdir $(wildcard chapters/[0-9][0-9]-*)))
ifeq ($(CH),)
SELECTED := $(ALL_CHAPTERS)
else
SELECTED := $(filter $(foreach ch,$(CH),$(ch) $(ch)-%),$(ALL_CHAPTERS))
ifeq ($(SELECTED),)
$(error no chapter matches CH=$(CH); the chapters are: $(ALL_CHAPTERS))
endif
endif
ifeq ($(filter $(IMPL),solutions chapters),)
$(error IMPL must be solutions (the reference code) or chapters (the starters))
endif
# make run: the chosen chapter, or the most advanced one; in a handout, the
# most advanced one whose tests passed last time (make check marks it), or
# the first.
PASSED_CHAPTERS := $(foreach ch,$(SELECTED),$(if $(wildcard build/chapters/$(ch)/passed),$(ch)))
RUN_CHAPTER := $(lastword $(if $(and $(HANDOUT),$(CH)),$(SELECTED),\
	$(if $(HANDOUT),$(or $(PASSED_CHAPTERS),$(firstword $(SELECTED))),$(SELECTED))))

# One chapter's make: $(call chapter_make,TARGET,CHAPTER,IMPL,OUT-PREFIX[,VARS])
# A cross build (ARCH=aarch64) gets a build folder of its own.
chapter_make = $(MAKE) --no-print-directory -f mk/chapter.mk SRC=$(3)/$(2) CHAPTER=$(2) \
	OUT=build/$(if $(ARCH),$(ARCH)/)$(4)/$(2) $(5) $(1)

# Run a target for every selected chapter; keep going after a failure so
# that one broken chapter does not hide the state of the others.
define each_chapter
	@failed=""; for ch in $(SELECTED); do \
		$(call chapter_make,$(1),$$ch,$(IMPL),$(2),$(3)) || failed="$$failed $$ch"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi
endef

.PHONY: all build check check-tests check-starters check-handout check-grading handout grade \
	gradescope memcheck sanitize \
	run progress starters mistakes compare tools pitfalls bench-switch deps deps-build clean help
.DEFAULT_GOAL := build
all: build

build: deps
	$(call each_chapter,build,$(IMPL))

# check: the tests, then (for the solutions, natively) the starter and
# handout checks. A cross build (ARCH=aarch64) runs the tests alone: the
# other checks do not depend on the machine, and build natively.
check: deps
	@status=0; \
	$(MAKE) --no-print-directory check-tests || status=1; \
	if [ "$(IMPL)" = solutions ] && [ -z "$(ARCH)" ]; then \
		$(MAKE) --no-print-directory check-starters || status=1; \
		$(MAKE) --no-print-directory check-handout || status=1; fi; \
	if [ $$status -eq 0 ]; then echo "make check: all passed"; \
	else echo "make check: FAILED (see above)"; fi; \
	exit $$status

check-tests: deps
	$(call each_chapter,check,$(IMPL))

check-starters: deps
	@tools/check-starters.sh $(SELECTED)

# The catalogue of typical mistakes (tests/mistakes/): each must make its
# chapter's tests fail, fast, naming its TODO and its symptom.
mistakes: deps
	@tools/mistakes.sh $(or $(filter $(notdir $(wildcard tests/mistakes/*)),$(SELECTED)),\
		$(error no chapter of $(SELECTED) has a catalogue of mistakes in tests/mistakes))

# The handout (tools/handout.sh): DEST=DIR, UPTO=NN for the chapters up to NN.
# check-handout makes a whole one in build/handout, proves it leaks no answer,
# and that its make check fails on the starters, naming TODOs.
handout:
	@if [ -z "$(DEST)" ]; then echo "usage: make handout DEST=DIR [UPTO=NN]"; exit 2; fi
	@tools/handout.sh $(DEST) $(UPTO)

check-handout:
	@rm -rf build/handout
	@tools/handout.sh build/handout >/dev/null
	@tools/handout.sh --check build/handout
	@if $(MAKE) --no-print-directory -C build/handout check-tests CH=01 >build/handout.log 2>&1; then \
		echo "the handout's make check passed on the starters: see build/handout.log"; exit 1; fi; \
	if ! grep -q "This test checks TODO" build/handout.log; then \
		echo "the handout's make check failed without naming a TODO: see build/handout.log"; \
		exit 1; fi; \
	echo "handout: make check in it fails on the starters, naming their TODOs"

# Grading (tools/grade.sh): SUB=a student's handout checkout; CH=NN for one
# chapter; RESULTS=FILE for Gradescope's results.json; PRIVATE_TESTS=DIR.
# check-grading proves it on a handout (tools/check-grading.sh); gradescope
# packs the course and autograder/ into the zip Gradescope asks for.
grade: deps
	@if [ -z "$(SUB)" ]; then echo "usage: make grade SUB=DIR [CH=NN]"; exit 2; fi
	@tools/grade.sh $(SUB) $(if $(CH),$(SELECTED))

check-grading: deps
	@tools/check-grading.sh

gradescope:
	@mkdir -p build
	git archive --format=zip --add-file=autograder/setup.sh --add-file=autograder/run_autograder \
		-o build/gradescope.zip HEAD
	@echo "wrote build/gradescope.zip (the course as committed, with tests/private): upload it" \
		"as the autograder of a Gradescope programming assignment"

memcheck: deps
	$(call each_chapter,memcheck,$(IMPL))
	@echo "make memcheck: all passed (no Valgrind error, no leak)"

sanitize: deps
	$(call each_chapter,check,sanitize/$(IMPL),SAN=1)
	@echo "make sanitize: all passed (no AddressSanitizer or UBSan report)"

# The course's client comes with it: build/tools/client talks to the server.
run: deps-build
	@$(MAKE) --no-print-directory build/tools/client
	@$(call chapter_make,run,$(RUN_CHAPTER),$(IMPL),$(IMPL),HOST=$(HOST) PORT=$(PORT))

progress: deps
	@tools/progress.sh $(STUDENT_CHAPTERS)

# The measuring instruments: the load generator and the reference peers.
TOOLS_CFLAGS = -std=gnu11 -O2 -g -Wall -Wextra -Werror $(CFLAGS)
TOOLS := build/tools/loadgen build/tools/epoll_echo build/tools/uring_echo build/tools/client
ifneq ($(shell command -v go 2>/dev/null),)
TOOLS += build/tools/go_echo
endif
tools: $(TOOLS)

build/tools/loadgen: tools/loadgen/loadgen.c tools/loadgen/histogram.c tools/loadgen/histogram.h
	@mkdir -p $(@D)
	$(CC) $(TOOLS_CFLAGS) $(filter %.c,$^) -o $@

build/tools/client: tools/client.c
	@mkdir -p $(@D)
	$(CC) $(TOOLS_CFLAGS) $< -o $@

build/tools/epoll_echo: tools/peers/epoll_echo.c $(wildcard common/*.c common/*.h)
	@mkdir -p $(@D)
	$(CC) $(TOOLS_CFLAGS) -Icommon $(filter %.c,$^) -o $@

build/tools/uring_echo: tools/peers/uring_echo.c $(wildcard common/*.c common/*.h)
	@mkdir -p $(@D)
	$(CC) $(TOOLS_CFLAGS) -Icommon $(filter %.c,$^) -o $@ $(shell pkg-config --libs liburing)

# Go caches builds under $HOME by default; keep it inside build/.
build/tools/go_echo: tools/peers/go_echo.go
	@mkdir -p $(@D)
	GOCACHE=$(abspath build/go-cache) GOTOOLCHAIN=local GOFLAGS= go build -o $@ $<

# N, SECONDS and SIZE choose the load; CH the chapters (default: all);
# PEERS the reference servers (default: those installed of the four); RUNS
# how many runs of each, taking turns, the table showing medians.
N ?= 1 100 1000 10000
SECONDS ?= 3
SIZE ?= 64
REPORT ?= $(if $(HANDOUT),build/benchmarks.md,docs/benchmarks.md)
PEERS ?= callback uring gevent go
RUNS ?= 1
compare: deps
	@$(MAKE) --no-print-directory build IMPL=$(IMPL)
	@$(MAKE) --no-print-directory tools
	@tools/compare.sh -c "$(SELECTED)" -n "$(N)" -d $(SECONDS) -s $(SIZE) -o $(REPORT) \
		-p "$(PEERS)" -t $(IMPL) -r $(RUNS)

# Chapter 04's demonstrations: the pitfalls of a hand-written switch, shown
# on purpose, and the cost of one switch, measured several ways. Both are
# built from the chosen tree's chapter 04: IMPL=chapters runs them on your
# own switch and first frame.
pitfalls bench-switch: deps-build
	@$(call chapter_make,$@,04-asm-switch,$(IMPL),$(IMPL))

starters:
	@for ch in $(SELECTED); do tools/check-starters.sh --write $$ch || exit 1; done

deps:
	@tools/install-deps.sh test

deps-build:
	@tools/install-deps.sh build

clean:
	rm -rf build

help:
ifeq ($(HANDOUT),yes)
	@echo "make                  build every chapter of your code (chapters/)"
	@echo "make check            test every chapter of your code"
	@echo "make check CH=01      the same for one chapter"
else
	@echo "make                  build every chapter's solution"
	@echo "make check            test every solution, and check the starters and the handout"
	@echo "make check CH=01      the same for one chapter"
	@echo "make check CH=01 IMPL=chapters   test the code in chapters/01-* (a student's)"
endif
	@echo "make mistakes         check that every typical mistake in tests/mistakes fails its chapter's tests, fast"
	@echo "make memcheck         the tests, with every test and server under Valgrind"
	@echo "make sanitize         the tests, built with AddressSanitizer and UBSan"
	@echo "make run              run the most advanced chapter's server on $(HOST):$(PORT) (CH=, PORT=, HOST=)"
	@echo "make progress         which chapters of your code pass their tests"
	@echo "make compare          measure every chapter's server and the peers (N=, SECONDS=, SIZE=, CH=, PEERS=, RUNS=)"
	@echo "make tools            build the load generator (build/tools/loadgen) and the peer servers"
	@echo "make pitfalls         chapter 04's pitfalls of a hand-written switch, each shown on purpose (IMPL=chapters: on yours)"
	@echo "make bench-switch     the cost of one context switch: setjmp, assembly, ucontext, threads (IMPL=chapters: yours)"
	@echo "make check CH=04 ARCH=aarch64   chapter 04's AArch64 switch, cross-built, tests under qemu"
	@echo "make starters         regenerate chapters/ from solutions/ (for course authors)"
	@echo "make handout DEST=DIR [UPTO=NN]   the students' repository: starters, tests, no answers"
	@echo "make grade SUB=DIR [CH=NN]        grade a student's checkout: points per TODO, results.json"
	@echo "make check-grading    prove make grade and the autograders' files on a sample handout"
	@echo "make gradescope       build/gradescope.zip: the course and autograder/, for Gradescope"
	@echo "make clean            remove build/"
	@echo "make help             this list"
	@echo "Inside a chapter folder, make, make check and make run do the same for that folder's code."
