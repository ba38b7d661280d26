#!/bin/sh
# `make mistakes`: the catalogue of typical mistakes, checked. Each file
# tests/mistakes/CHAPTER/NAME.patch is one mistake students really make in
# one TODO, as a patch against solutions/CHAPTER, after a header:
#
#   Mistake: what the student wrote, in one line
#   TODO: the exercise it belongs to
#   Symptom: text that make check must print when it catches this mistake
#            (what happened: "hung", "SIGSEGV", "expected 2, got 3"...)
#
# For each one, this applies the patch to a scratch copy of the chapter and
# requires that
#   1. the patch changes only the body of that TODO's exercise (cutting the
#      exercise out of the patched copy gives the starter unchanged);
#   2. the chapter's make check fails, and within MISTAKE_SECONDS (30)
#      seconds of wall time, build included: the build a student's second
#      make check does, the chapter's own code compiled again and the tests
#      and their harness, which no exercise touches, built already (they are
#      copied from the solution's build, dates kept, so make sees them up to
#      date);
#   3. its output names the TODO ("This test checks TODO ... NAME ...");
#   4. its output contains the mistake's symptom.
#
#   mistakes.sh [CHAPTER | CHAPTER/NAME]...   default: every chapter with a
#                                             catalogue
# Logs: build/mistakes/CHAPTER/NAME/log.
set -u

starter=tools/starter.sh
limit=${MISTAKE_SECONDS:-30}

# The mistakes are judged by the whole chapter's run, as a student sees it.
unset CK_RUN_SUITE CK_RUN_CASE CK_INCLUDE_TAGS CK_EXCLUDE_TAGS \
	CK_LOG_FILE_NAME CK_TAP_LOG_FILE_NAME CK_XML_LOG_FILE_NAME

header() {	# header FIELD FILE: the value of "FIELD: value" before the diff
	sed -n "/^--- /q; s/^$1: *//p" "$2" | head -n 1
}

now() { date +%s.%N; }

if [ $# -eq 0 ]; then
	set -- $(ls tests/mistakes 2>/dev/null)
fi

# The solution's build, whose test objects each mistake's build starts from.
# The chapter's own objects (obj/) are left out: the mistake changes them.
solution_build() {	# solution_build CHAPTER
	make --no-print-directory -f mk/chapter.mk SRC="solutions/$1" CHAPTER="$1" \
		OUT="build/solutions/$1" build >/dev/null ||
		{ echo "mistakes.sh: the solution of $1 does not build" >&2; exit 2; }
}
seed_build() {	# seed_build CHAPTER DIR
	for part in flags common lib tests; do
		[ -e "build/solutions/$1/$part" ] && cp -Rp "build/solutions/$1/$part" "$2/"
	done
	# The test programs get linked again, with the mistake's objects. The
	# objects' dependency files name the solution's build and sources: made
	# to name this copy's, make compiles again whatever includes a file the
	# patch changed (chapter 04's test_switch includes co.c), the copy of the
	# sources keeping the solution's dates but for the patched files.
	find "$2/tests" -type f ! -name '*.o' ! -name '*.d' -delete
	find "$2" -name '*.d' ! -path "$2/src/*" -exec sed -i \
		-e "s|build/solutions/$1/|$2/|g" -e "s|solutions/$1/|$2/src/|g" {} +
}

passed=0 failed=0
printf '%-46s %-14s %-7s %7s %-6s %s\n' mistake TODO caught seconds named symptom
for arg in "$@"; do
	ch=${arg%%/*}
	only=${arg#"$ch"}
	[ -d "solutions/$ch" ] || { echo "mistakes.sh: no chapter solutions/$ch" >&2; exit 2; }
	solution_build "$ch"
	for patch in tests/mistakes/"$ch"/${only:+${only#/}}*.patch; do
		[ -e "$patch" ] || continue
		name=$(basename "$patch" .patch)
		todo=$(header TODO "$patch")
		symptom=$(header Symptom "$patch")
		dir=build/mistakes/$ch/$name
		problem=""
		rm -rf "$dir"
		mkdir -p "$dir"
		cp -Rp "solutions/$ch" "$dir/src"
		if [ -z "$todo" ] || [ -z "$symptom" ] || [ -z "$(header Mistake "$patch")" ]; then
			problem="the header needs Mistake:, TODO: and Symptom: lines"
		elif ! "$starter" list "solutions/$ch" | grep -qx "$todo"; then
			problem="solutions/$ch has no TODO named $todo"
		elif ! (cd "$dir/src" && git apply "$OLDPWD/$patch") >"$dir/log" 2>&1; then
			problem="the patch does not apply: $(head -n 1 "$dir/log")"
		elif ! "$starter" cut "solutions/$ch" "$dir/cut-solution" "$todo" ||
			! "$starter" cut "$dir/src" "$dir/cut-mistake" "$todo"; then
			problem="the patched code has broken exercise markers"
		elif ! diff -r "$dir/cut-solution" "$dir/cut-mistake" >/dev/null; then
			problem="the patch changes code outside the exercise $todo"
		fi
		if [ -n "$problem" ]; then
			printf '%-46s %-14s %s\n' "$ch/$name" "$todo" "BROKEN: $problem"
			failed=$((failed + 1))
			continue
		fi

		seed_build "$ch" "$dir"
		start=$(now)
		if make --no-print-directory -f mk/chapter.mk SRC="$dir/src" CHAPTER="$ch" \
			OUT="$dir" check >"$dir/log" 2>&1; then
			caught=no
		else
			caught=yes
		fi
		seconds=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
		if ! grep -qE '^[0-9]+%: Checks: ' "$dir/log"; then
			printf '%-46s %-14s %s\n' "$ch/$name" "$todo" \
				"BROKEN: it does not build (see $dir/log): a mistake must compile cleanly"
			failed=$((failed + 1))
			continue
		fi
		named=no
		grep -qE "TODO ([a-z0-9_]+ )*$todo( |\b)" "$dir/log" && named=yes
		shown=no
		grep -qF -- "$symptom" "$dir/log" && shown=yes
		verdict=ok
		if [ $caught = no ] || [ $named = no ] || [ $shown = no ] ||
			awk -v s="$seconds" -v l="$limit" 'BEGIN { exit !(s > l) }'; then
			verdict="FAILED (see $dir/log)"
		fi
		printf '%-46s %-14s %-7s %7s %-6s %-4s %s\n' "$ch/$name" "$todo" $caught "$seconds" \
			$named $shown "$verdict"
		if [ "$verdict" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
	done
done
echo "mistakes: $passed passed, $failed failed (each must fail make check within $limit s," \
	"naming its TODO and showing its symptom)"
[ $failed -eq 0 ]
