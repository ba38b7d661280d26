#!/bin/sh
# Chapter 04: `make pitfalls` runs this. Each program in pitfalls/ gets one
# thing about a hand-written switch wrong on purpose; this runs them in turn,
# says before each what is about to happen, and shows what it printed and
# how it ended. A crash that is the point is a success here: this fails only
# when a pitfall does NOT show its symptom.
#
#   run.sh BUILD_DIR      (where build.mk put the programs)
set -u

bin=$1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
ulimit -c 0 2>/dev/null || true	# the crashes below are meant: no core files
unshown=""			# the pitfalls that did not show their symptom
skipped=""			# and those this machine cannot show

title() {	# title N TITLE WHAT-YOU-WILL-SEE
	echo
	echo "== Pitfall $1: $2"
	echo "   You are about to see $3"
}

# run COMMAND...: show the command, its output and how it ended; sets $ended
# to "exit N" or "SIGNAME".
run() {
	echo "\$ $*"
	"$@" >"$log" 2>&1
	status=$?
	sed 's/^/  | /' "$log"
	if [ $status -gt 128 ]; then
		ended="SIG$(kill -l $status)"
	else
		ended="exit $status"
	fi
	echo "  -> $ended"
}

# skip N WHY: pitfall N cannot be shown on this machine, because WHY.
skip() {
	skipped="$skipped $1"
	echo "  (skipped: $2)"
}

# expect N ENDED TEXT: the last run ended so and printed TEXT.
expect() {
	if [ "$ended" != "$2" ] || ! grep -qF -- "$3" "$log"; then
		echo "  !! pitfall $1 did not show its symptom: expected $2 and \"$3\""
		unshown="$unshown $1"
	fi
}

# expect_not N TEXT WHY: the last run did not print TEXT.
expect_not() {
	if grep -qF -- "$2" "$log"; then
		echo "  !! pitfall $1: \"$2\" was not expected here ($3)"
		unshown="$unshown $1"
	fi
}

title 1 "_FORTIFY_SOURCE breaks a setjmp/longjmp switch" \
	"chapter 03's setjmp switch, built with -O2
   -D_FORTIFY_SOURCE=2, killed by glibc (SIGABRT) at its first _longjmp down
   to a stack at a lower address (usually: when the scheduler resumes the
   coroutine): \"*** longjmp causes uninitialized stack frame ***\"."
# Older glibc writes that message to the terminal unless told otherwise.
LIBC_FATAL_STDERR_=1 run "$bin/fortify_longjmp"
expect 1 SIGABRT "longjmp causes uninitialized stack frame"

title 2 "a first frame 8 bytes off (x86-64 only)" \
	"a coroutine call printf(\"%f\"), twice: with the first
   frame co.c builds, it prints; with the same frame 8 bytes lower, as when
   the slot for its return address is left out, it starts with rsp 16-byte
   aligned and dies (SIGSEGV) on a movaps."
run "$bin/misaligned_frame" aligned
if [ "$ended" = "exit 77" ]; then
	skip 2 "this pitfall is shown on x86-64 only"
else
	expect 2 "exit 0" "pi is about 3.14"
	run "$bin/misaligned_frame"
	expect 2 SIGSEGV "SIGSEGV at"
fi

title 3 "a switch that does not save the FP control state" \
	"one coroutine set FE_UPWARD and yield, and the next
   compute. With the chapter's switch: \"expected 2, got 2\". With the same
   switch assembled without its saving and loading of MXCSR and the x87
   control word (FPCR on AArch64): \"expected 2, got 3\", and nothing crashes
   or warns."
run "$bin/rounding_kept"
expect 3 "exit 0" "rint(2.5): expected 2, got 2"
run "$bin/rounding_leak"
expect 3 "exit 0" "rint(2.5): expected 2, got 3"

title 4 "Valgrind and unregistered stacks" \
	"one coroutine program under Valgrind, twice: with its
   stacks registered (VALGRIND_STACK_REGISTER), no warning; without,
   \"Warning: client switching stacks?\". Its stacks are gigabytes from main's,
   and Valgrind warns when sp jumps more than --max-stackframe (2 MB) into
   memory it was not told is a stack."
if ! command -v valgrind >/dev/null 2>&1; then
	skip 4 "Valgrind is not installed"
else
	run valgrind "$bin/valgrind_stacks"
	if [ "$ended" != "exit 0" ] && grep -q "unhandled dwarf2\|debuginfo reader" "$log"; then
		skip 4 "this Valgrind cannot read the build's debug information
   (DWARF 5 as clang writes it); build with gcc, or add CFLAGS=-gdwarf-4"
	else
		expect 4 "exit 0" "second: done"
		expect_not 4 "client switching stacks?" \
			"was <valgrind/valgrind.h> installed when co.c was built?"
		run valgrind "$bin/valgrind_stacks_unregistered"
		expect 4 "exit 0" "client switching stacks?"
	fi
fi

echo
if [ -n "$unshown" ]; then
	echo "make pitfalls: FAILED: pitfall(s)$unshown did not show their symptom"
	exit 1
fi
echo "make pitfalls: each pitfall run showed its symptom (the crashes above are meant)${skipped:+; skipped here:$skipped}"
