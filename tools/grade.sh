#!/bin/sh
# `make grade SUB=DIR [CH=NN]`: grade a student's handout checkout.
#
# Only the student's .c, .h and .S files are taken, those the starter has, into
# a pristine copy of the course (the course's own Makefiles, build.mk files and
# tests, so that a Makefile or a test the student changed counts for nothing),
# with the private tests added (PRIVATE_TESTS, tests/private by default). Each
# chapter's tests run; each TODO earns its points (tests/points) when every
# test tagged with it passes, and only if some of them fail on the untouched
# starter: a TODO earns nothing for tests that pass without any work.
#
#   grade.sh SUBMISSION [CHAPTER...]   default: every chapter the submission has
#   grade.sh --starter [CHAPTER...]    only run the untouched starters (once
#                                      per change of the course; grading
#                                      does it when needed)
#
# Prints a table and "score: N/M"; writes Gradescope's results.json to RESULTS
# (default build/grade/NAME/results.json). Exit status 0 once graded, whatever
# the score.
set -eu

usage() {
	echo "usage: $0 SUBMISSION_DIR [CHAPTER...]" >&2
	exit 2
}
[ $# -ge 1 ] || usage
[ -d solutions ] || { echo "$0: run it in the course repository" >&2; exit 2; }
course=$(pwd)
private=${PRIVATE_TESTS:-$course/tests/private}
points=$course/tests/points

unset CK_RUN_SUITE CK_RUN_CASE CK_INCLUDE_TAGS CK_EXCLUDE_TAGS CK_LOG_FILE_NAME \
	CK_XML_LOG_FILE_NAME CK_VERBOSITY CK_FORK

# A pristine copy of what builds and tests the chapters: the student's files
# go into its chapters/ only.
pristine() {	# pristine DIR
	rm -rf "$1"
	mkdir -p "$1/tests"
	cp -R Makefile mk common tools chapters "$1/"
	for t in tests/*; do
		case $t in tests/mistakes | tests/private) continue ;; esac
		cp -R "$t" "$1/tests/"
	done
}

# Run one chapter's tests in a copy; their TAP goes to OUT/TEST.tap.
run_chapter() {	# run_chapter COPY CHAPTER OUT
	rm -rf "$3"
	mkdir -p "$3"
	(cd "$1" && CK_TAP_LOG_FILE_NAME="$3/%s.tap" TH_CHAPTER="$2" \
		make --no-print-directory -f mk/chapter.mk SRC="chapters/$2" CHAPTER="$2" \
		OUT="$3/build" PRIVATE_TESTS="$private" check) >"$3/log" 2>&1 || true
}

# "TEST ok|failed" for every test run, from the TAP files; a chapter that did
# not build has none.
outcomes() {	# outcomes OUT
	cat "$1"/*.tap 2>/dev/null | awk '
	/^ok / || /^not ok / { split($0, part, " - "); split(part[2], where, ":")
		print where[3], ($1 == "ok" ? "ok" : "failed") }'
}

# The failure message of one test (its first lines), from the TAP files.
message() {	# message OUT TEST
	cat "$1"/*.tap 2>/dev/null | awk -v test="$2" '
	/^ok / || /^not ok / { split($0, part, " - "); split(part[2], where, ":"); on = where[3] == test && $1 == "not"
		if (on) { sub(/^[^:]*:[^:]*:[^:]*: /, "", part[2]); print part[2]; lines = 1 }; next }
	on && lines < 12 { print; lines++ }'
}

# The starters' outcomes, once per change of the course's tests, starters or
# private tests: each chapter's the first time it is graded.
starter=$course/build/grade/.starter
stamp=$starter/stamp
if [ ! -f "$stamp" ] ||
	[ -n "$(find tests chapters mk "$private" -newer "$stamp" -type f 2>/dev/null | head -n 1)" ]; then
	rm -rf "$starter"
	mkdir -p "$starter"
	pristine "$starter/copy"
	touch "$stamp"
fi
run_starter() {	# run_starter CHAPTER
	[ -f "$starter/$1.outcomes" ] && return 0
	echo "grade: running the untouched starter of $1 once, to know which tests pass without work" >&2
	run_chapter "$starter/copy" "$1" "$starter/$1"
	outcomes "$starter/$1" >"$starter/$1.outcomes"
}
if [ "$1" = --starter ]; then
	shift
	for ch in ${*:-$(ls chapters)}; do run_starter "$ch"; done
	exit 0
fi

sub=$(cd "$1" && pwd) || usage
shift
[ -d "$sub/chapters" ] || { echo "$0: $sub has no chapters/ folder: is it a handout checkout?" >&2; exit 2; }
name=$(basename "$sub")
mkdir -p "${GRADE_DIR:-build/grade}"
work=$(cd "${GRADE_DIR:-build/grade}" && pwd)/$name
results=${RESULTS:-$work/results.json}
if [ $# -eq 0 ]; then
	set -- $(cd "$sub/chapters" && ls -d [0-9][0-9]-* 2>/dev/null)
fi

mkdir -p "$work"
pristine "$work/copy"
json_tests=""
total=0 max=0
printf '%-18s %-16s %7s  %s\n' chapter TODO points "(tests that fail)"
for ch in "$@"; do
	if [ ! -d "chapters/$ch" ]; then
		echo "grade: the course has no chapter $ch" >&2
		exit 2
	fi
	for f in $(cd "chapters/$ch" && find . -type f \( -name '*.c' -o -name '*.h' -o -name '*.S' \)); do
		if [ -f "$sub/chapters/$ch/$f" ]; then
			cp "$sub/chapters/$ch/$f" "$work/copy/chapters/$ch/$f"
		fi
	done
	run_starter "$ch"
	run_chapter "$work/copy" "$ch" "$work/$ch"
	outcomes "$work/$ch" >"$work/$ch.outcomes"
	"$course/tools/todo-tests.sh" list "$ch" "$starter/$ch/build/tests" >"$work/$ch.tagged"
	built=$(wc -l <"$work/$ch.outcomes")
	for todo in $("$course/tools/starter.sh" list "solutions/$ch"); do
		if ! awk -v ch="$ch" -v todo="$todo" '$1 == ch && $2 == todo { found = 1 } END { exit !found }' \
			"$points"; then
			echo "grade: tests/points gives no points to TODO $todo of $ch" >&2
			exit 2
		fi
	done
	for todo in $(awk -v ch="$ch" '$1 == ch { print $2 }' "$points"); do
		worth=$(awk -v ch="$ch" -v todo="$todo" '$1 == ch && $2 == todo { print $3 }' "$points")
		tests=$(awk -v todo="$todo" '$1 == todo { print $2 }' "$work/$ch.tagged")
		failing="" own=0
		for t in $tests; do
			grep -qx "$t ok" "$work/$ch.outcomes" || failing="$failing $t"
			grep -qx "$t ok" "$starter/$ch.outcomes" || own=$((own + 1))
		done
		got=0
		if [ "$built" -gt 0 ] && [ -z "$failing" ] && [ $own -gt 0 ]; then got=$worth; fi
		why=""
		if [ "$built" -eq 0 ]; then
			why="(the chapter does not build: see $work/$ch/log)"
		elif [ -n "$failing" ]; then
			why=$(echo $failing | awk '{ printf "(%s", $1; for (i = 2; i <= NF && i <= 3; i++) printf ", %s", $i
				if (NF > 3) printf " and %d more", NF - 3; printf ")" }')
		elif [ $own -eq 0 ]; then
			why="(every test of it passes on the starter: nothing to earn)"
		fi
		printf '%-18s %-16s %3s/%-3s  %s\n' "$ch" "$todo" "$got" "$worth" "$why"
		total=$((total + got)) max=$((max + worth))
		output="$why"
		for t in $failing; do
			output="$output
$t: $(message "$work/$ch" "$t")"
		done
		json_tests="$json_tests${json_tests:+,}
    {\"name\": \"$ch $todo\", \"score\": $got, \"max_score\": $worth, \"visibility\": \"visible\", \"output\": $(printf '%s' "$output" | awk '
	BEGIN { printf "\"" }
	{ gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); gsub(/[\001-\037]/, "")
	  printf "%s%s", (NR > 1 ? "\\n" : ""), $0 }
	END { printf "\"" }')}"
	done
done
echo "score: $total/$max"
mkdir -p "$(dirname "$results")"
printf '{\n  "score": %s,\n  "visibility": "visible",\n  "output": "%s of %s points",\n  "tests": [%s\n  ]\n}\n' \
	"$total" "$total" "$max" "$json_tests" >"$results"
echo "grade: wrote $results"
