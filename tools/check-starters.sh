#!/bin/sh
# Keeps the starters honest. For each chapter it checks that
#   1. chapters/CH is exactly what tools/starter.sh makes from solutions/CH
#      (the lesson, README.md, is the one file written by hand there);
#   2. the starter builds with no warnings (warnings are errors);
#   3. every TODO is tested: with just that exercise cut out of the solution,
#      at least one of the tests tagged with its name fails;
#   4. the tests that the TODO comments and the lesson's table name for a
#      TODO are tagged with it (tools/todo-tests.sh).
#
#   check-starters.sh CHAPTER...        check, e.g. 01-blocking
#   check-starters.sh --write CHAPTER   regenerate chapters/CHAPTER
set -eu

starter=tools/starter.sh

# A teacher's CK_RUN_CASE or log file names are not for the mutant runs,
# which select their tests by tag.
unset CK_RUN_SUITE CK_RUN_CASE CK_INCLUDE_TAGS CK_EXCLUDE_TAGS \
	CK_LOG_FILE_NAME CK_TAP_LOG_FILE_NAME CK_XML_LOG_FILE_NAME

generate() {	# generate CHAPTER: the starter, made afresh, in build/starters
	"$starter" cut "solutions/$1" "build/starters/$1"
}

# The frozen copies of earlier chapters' files in solutions/CH, each named on
# its first line (see tools/starter.sh freeze), as "COPY ORIGINAL" lines.
frozen() {
	for f in "solutions/$1"/*.c "solutions/$1"/*.h; do
		[ -e "$f" ] || continue
		sed -n '1s|^/\* Frozen copy of \(solutions/[^ ]*\)$|'"$f"' \1|p' "$f"
	done
}

write() {
	frozen "$1" | while read -r copy original; do
		"$starter" freeze "$original" >"$copy"
		echo "wrote $copy from $original"
	done
	generate "$1"
	mkdir -p "chapters/$1"
	find "chapters/$1" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	cp -R "build/starters/$1/." "chapters/$1/"
	echo "wrote chapters/$1 from solutions/$1"
}

# The Check summary line, "NN%: Checks: T, Failures: F, Errors: E", as "T F+E".
tally() {
	sed -nE 's/^[0-9]+%: Checks: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+)$/\1 \2 \3/p' "$1" |
		awk '{ total += $1; failed += $2 + $3 } END { print total + 0, failed + 0 }'
}

check() {
	ch=$1
	ok=true
	for pair in $(frozen "$ch" | tr ' ' :); do
		copy=${pair%%:*} original=${pair#*:}
		if ! "$starter" freeze "$original" | cmp -s - "$copy"; then
			echo "$ch: $copy is not a frozen copy of $original as it is now"
			echo "  (run 'make starters CH=${ch%%-*}' after changing $original)"
			ok=false
		fi
	done
	generate "$ch"
	if ! diff -r -x README.md "chapters/$ch" "build/starters/$ch" >"build/starters/$ch.diff" 2>&1; then
		echo "$ch: chapters/$ch differs from the starter generated from solutions/$ch:"
		head -n 20 "build/starters/$ch.diff"
		echo "  (run 'make starters CH=${ch%%-*}' after changing a solution)"
		ok=false
	fi

	log=build/chapters/$ch.build.log
	mkdir -p build/chapters
	if ! make --no-print-directory -f mk/chapter.mk SRC="chapters/$ch" CHAPTER="$ch" \
		OUT="build/chapters/$ch" build >"$log" 2>&1; then
		echo "$ch: the starter does not build cleanly:"
		tail -n 20 "$log"
		ok=false
	fi

	for todo in $("$starter" list "solutions/$ch"); do
		dir=build/mutants/$ch/$todo
		"$starter" cut "solutions/$ch" "$dir/src" "$todo"
		if CK_INCLUDE_TAGS=$todo make --no-print-directory -f mk/chapter.mk SRC="$dir/src" \
			CHAPTER="$ch" OUT="$dir" check >"$dir/log" 2>&1; then
			counts=$(tally "$dir/log")
			if [ "${counts% *}" -eq 0 ]; then
				echo "$ch: TODO $todo is not tested: no test case is tagged '$todo'"
			else
				echo "$ch: TODO $todo is not tested: its ${counts% *} tagged tests pass without it"
			fi
			ok=false
			continue
		fi
		counts=$(tally "$dir/log")
		total=${counts% *} failed=${counts#* }
		if [ "$total" -eq 0 ]; then
			echo "$ch: cutting out TODO $todo breaks the build:"
			tail -n 20 "$dir/log"
			ok=false
			continue
		fi
		echo "$ch: TODO $todo is tested: without it, $failed of its $total tests fail"
	done
	if ! tools/todo-tests.sh check "$ch"; then
		echo "$ch: a TODO comment or the lesson names a test not tagged with that TODO" \
			"(tag the test case with it in th_tcase(), or name another test)"
		ok=false
	fi
	$ok
}

if [ "${1:-}" = --write ]; then
	shift
	for ch in "$@"; do write "$ch"; done
	exit 0
fi
status=0
for ch in "$@"; do
	check "$ch" || status=1
done
if [ $status -eq 0 ]; then echo "starters: all generated, building and tested"; fi
exit $status
