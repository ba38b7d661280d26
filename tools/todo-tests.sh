#!/bin/sh
# Which tests check which TODO: the one source is the tests themselves (the
# TODOs each test case is tagged with, th_tcase() in tests/lib/harness.h). The
# TODO comments in the code and the "Your turn" table of each lesson name
# tests too; this checks that every test they name is tagged with that TODO.
#
#   todo-tests.sh list CHAPTER    a line per TODO and test: "TODO TEST"
#   todo-tests.sh check CHAPTER   the TODO comments and the lesson agree
#
# It reads the test binaries of build/solutions/CHAPTER (make builds them).
set -eu

usage() {
	echo "usage: $0 list|check CHAPTER" >&2
	exit 2
}
[ $# -eq 2 ] || usage
command=$1 ch=$2
[ -d "solutions/$ch" ] || { echo "$0: no chapter solutions/$ch" >&2; exit 2; }

bins=build/solutions/$ch/tests
make --no-print-directory -f mk/chapter.mk SRC="solutions/$ch" CHAPTER="$ch" \
	OUT="build/solutions/$ch" build >/dev/null

# "TEST<tab>TEST CASE<tab>TODOS" for every test the chapter runs.
all_tests() {
	for t in "$bins"/test_*; do
		case $t in *.o | *.d) continue ;; esac
		TH_LIST_TESTS=1 TH_CHAPTER=$ch "$t"
	done
}

tagged() {	# "TODO TEST" pairs
	all_tests | awk -F '\t' '{ n = split($3, todos, " "); for (i = 1; i <= n; i++) print todos[i], $1 }'
}

case $command in
list)
	tagged | sort
	exit 0
	;;
check) ;;
*) usage ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tagged >"$work/tagged"
all_tests | cut -f 1 >"$work/tests"

# Where each TODO names tests: its comment in the solution, and its row in
# the lesson's table ("| `todo` (`file`) | ... | its tests |").
for f in "solutions/$ch"/*.c "solutions/$ch"/*.h "solutions/$ch"/*.S; do
	[ -e "$f" ] || continue
	awk -v file="$f" '
	/\/\* EXERCISE [a-z0-9_]+:/ { todo = $0; sub(/.*EXERCISE /, "", todo); sub(/:.*/, "", todo); inside = 1 }
	inside { line = $0; gsub(/[^a-z0-9_]+/, " ", line); n = split(line, words, " ")
		for (i = 1; i <= n; i++) print todo, words[i], file ":" NR }
	inside && /\*\// { inside = 0 }
	' "$f"
done >"$work/named"
lesson=chapters/$ch/README.md
if [ -f "$lesson" ]; then
	awk -v file="$lesson" '
	/^\| `[a-z0-9_]+`/ { todo = $0; sub(/^\| `/, "", todo); sub(/`.*/, "", todo)
		line = $0; n = 0
		while (match(line, /`[a-z0-9_]+`/)) { print todo, substr(line, RSTART + 1, RLENGTH - 2), file ":" NR
			line = substr(line, RSTART + RLENGTH) } }
	' "$lesson" >>"$work/named"
fi

# Every name that is a test must be tagged with the TODO that names it.
tools/starter.sh list "solutions/$ch" >"$work/todos"
status=0
while read -r todo name where; do
	grep -qx "$todo" "$work/todos" || continue
	grep -qx "$name" "$work/tests" || continue
	if ! grep -qx "$todo $name" "$work/tagged"; then
		tags=$(awk -v t="$name" '$2 == t { printf "%s%s", sep, $1; sep = " " }' "$work/tagged")
		echo "$where: TODO $todo names test $name, which is not tagged with $todo" \
			"(its TODOs: ${tags:-none})"
		status=1
	fi
done <"$work/named"
exit $status
