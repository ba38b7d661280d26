#!/bin/sh
# Chapter 04 benchmark, second part of `make bench-switch`: the instructions
# one switch executes, counted by callgrind. A clock on a busy machine
# wavers; this count is the same every time.
#
#   callgrind.sh BENCH_SWITCH     (the built bench/bench_switch.c)
#
# Each way makes a fixed number of round trips in its function loop_WAY, and
# callgrind counts only while that function runs (--toggle-collect), so the
# setup is left out; both sides of the round trip, the loop and the calls
# are counted.
set -eu

bench=$1
round_trips=100000
out=$(dirname "$bench")/callgrind

echo
if ! command -v valgrind >/dev/null 2>&1; then
	echo "Instructions per switch: skipped, Valgrind is not installed."
	exit 0
fi
echo "Instructions per switch, counted by callgrind in $round_trips round trips:"
echo
printf '  %-32s %12s %10s\n' way instructions "vs ch. 04"
mkdir -p "$out"
reference=""
for way in asm variant setjmp boost; do
	# A way this build lacks (Boost.Context, when it was not found) exits 2.
	name=$("$bench" --count "$way" 0 2>/dev/null) || continue
	if ! valgrind -q --tool=callgrind --callgrind-out-file="$out/$way.out" \
		--collect-atstart=no --toggle-collect="loop_$way" \
		"$bench" --count "$way" "$round_trips" >/dev/null 2>"$out/$way.log"; then
		if grep -q "unhandled dwarf2\|debuginfo reader" "$out/$way.log"; then
			echo "  (skipped: this Valgrind cannot read the build's debug information,"
			echo "   DWARF 5 as clang writes it; build with gcc, or add CFLAGS=-gdwarf-4)"
			exit 0
		fi
		cat "$out/$way.log" >&2
		exit 1
	fi
	total=$(sed -n 's/^totals: *//p' "$out/$way.out")
	per_switch=$(awk -v t="$total" -v n="$round_trips" 'BEGIN { printf "%.1f", t / (2 * n) }')
	reference=${reference:-$per_switch}
	printf '  %-32s %12s %9sx\n' "$name" "$per_switch" \
		"$(awk -v a="$per_switch" -v b="$reference" 'BEGIN { printf "%.2f", a / b }')"
done
