#!/bin/sh
# `make progress`: runs each chapter's tests against the code in chapters/
# (the student's) and prints how far along each chapter is. The chapters are
# built first, then tested three at a time (JOBS): their tests mostly wait
# (for a hang's deadline, say), so that the whole takes about half a minute
# on two cores even when every chapter is a starter.
#   progress.sh CHAPTER...
set -u

jobs=${JOBS:-3}
mkdir -p build/chapters
for ch in "$@"; do
	make --no-print-directory -j"$jobs" -f mk/chapter.mk SRC="chapters/$ch" CHAPTER="$ch" \
		OUT="build/chapters/$ch" build >"build/chapters/$ch.progress.log" 2>&1
done
printf '%s\n' "$@" | xargs -P "$jobs" -I {} sh -c '
	make --no-print-directory -f mk/chapter.mk SRC="chapters/$1" CHAPTER="$1" \
		OUT="build/chapters/$1" check >>"build/chapters/$1.progress.log" 2>&1' sh {}

printf '%-18s %-8s %s\n' chapter tests status
next=""
for ch in "$@"; do
	log=build/chapters/$ch.progress.log
	counts=$(sed -nE 's/^[0-9]+%: Checks: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+)$/\1 \2 \3/p' "$log" |
		awk '{ total += $1; failed += $2 + $3 } END { print total + 0, total - failed }')
	total=${counts% *} passed=${counts#* }
	if [ "$total" -eq 0 ]; then
		status="does not build: see $log"
	elif [ "$passed" -eq "$total" ]; then
		status="done"
	else
		status="not done: $((total - passed)) failing"
	fi
	if [ "$status" != "done" ] && [ -z "$next" ]; then next=$ch; fi
	printf '%-18s %3s/%-4s %s\n' "$ch" "$passed" "$total" "$status"
done
if [ -n "$next" ]; then
	echo "Next: read chapters/$next/README.md (\"Your turn\"), then: make check CH=${next%%-*} IMPL=chapters"
else
	echo "Every chapter passes its tests."
fi
