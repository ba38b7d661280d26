# A chapter built for AArch64 on another CPU, and tested there under
# emulation: make check CH=04 ARCH=aarch64. mk/chapter.mk includes this file
# near its top when ARCH is not the machine's own CPU.
#
# Debian's cross compiler builds the chapter, its tests and the short-I/O
# shim; Check comes from Debian's own arm64 package (multiarch); qemu-user
# runs every test binary, and every server a test starts, as an AArch64
# Linux process on this machine's kernel.

TRIPLET := aarch64-linux-gnu

# Valgrind runs code of its own CPU only.
ifneq ($(filter memcheck,$(MAKECMDGOALS)),)
$(error make memcheck cannot run AArch64 code on $(shell uname -m); use make check ARCH=$(ARCH))
endif

# Install what is missing first, as the top-level make check does with
# tools/install-deps.sh test. It has to happen while make reads this file,
# not in a recipe: chapter.mk asks pkg-config about Check right after this.
# $(shell) would swallow the installer's stdout, so it goes to stderr.
$(shell tools/install-deps.sh cross >&2)
ifneq ($(.SHELLSTATUS),0)
$(error tools/install-deps.sh cross failed: make ARCH=$(ARCH) needs what it installs)
endif

# Make's default CC, or one from the environment, is the host's compiler;
# CC=... on the command line still wins.
CC := $(TRIPLET)-gcc

# Check for AArch64: the .pc file of Debian's check:arm64. Exporting
# PKG_CONFIG_LIBDIR would not do: GNU make before 4.4 gives $(shell) only the
# environment it started with, so chapter.mk's $(shell pkg-config ...) would
# still read the host's check.pc. override keeps chapter.mk's own answer,
# assigned after this file, from replacing this one.
CROSS_PKG_CONFIG := PKG_CONFIG_LIBDIR=/usr/lib/$(TRIPLET)/pkgconfig pkg-config
override CHECK_CFLAGS := $(shell $(CROSS_PKG_CONFIG) --cflags check)
override CHECK_LIBS := $(shell $(CROSS_PKG_CONFIG) --libs check)

# Test binaries run under qemu-aarch64. Without -L it runs them with the arm64
# C library that check:arm64 brought, at the paths a real arm64 Debian has.
# -L /usr/aarch64-linux-gnu (the cross compiler's C library) would mix that
# copy's loader with the multiarch libc.so.6 it then finds, two builds of glibc.
# The guard-page test ends in SIGSEGV on purpose; qemu says so on stderr
# ("qemu: uncaught target signal 11"), and Check counts the test as passed.
TEST_RUNNER := qemu-aarch64

# The servers the tests start run under it too: the harness puts TH_WRAPPER
# in front of the server's command line (tests/lib/harness.h). Exported, not
# added to TEST_ENV, which chapter.mk sets with = after this file. qemu hands
# its environment to the program it runs, LD_PRELOAD for the short-I/O shim
# included: the emulated server loads the shim. qemu itself, an x86-64
# program, cannot, and its loader says so ("ERROR: ld.so: object ... cannot be
# preloaded ... ignored") on the server's stderr before the server starts.
export TH_WRAPPER := $(TEST_RUNNER)

# qemu-user runs one thread of its own (for RCU) in every process it runs:
# th_kernel_threads() leaves it out of the counts tests make.
export TH_RUNNER_THREADS := 1

# Emulated, the code runs several times slower: every deadline of the
# harness (TH_TIME_SCALE) and Check's timeouts stretch alike.
export TH_TIME_SCALE := 3
export CK_TIMEOUT_MULTIPLIER := 3
