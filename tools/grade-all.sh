#!/bin/sh
# Grade a whole class: every folder in SUBMISSIONS is one student's handout
# checkout (a clone of their repository, say). Each is graded by
# tools/grade.sh, JOBS at a time; the table of each goes to
# build/grade/NAME/report.txt, its results.json next to it, and one CSV row a
# student to build/grade/grades.csv: name, total, maximum, then the points of
# every TODO.
#
#   grade-all.sh [-j JOBS] SUBMISSIONS [CHAPTER...]
#
# The tests watch for hangs and idle CPU: more jobs than half the machine's
# cores makes them slower, and a slow machine is a reason for a hang report.
set -eu

jobs=1
if [ "${1:-}" = -j ]; then
	jobs=$2
	shift 2
fi
[ $# -ge 1 ] || { echo "usage: $0 [-j JOBS] SUBMISSIONS_DIR [CHAPTER...]" >&2; exit 2; }
submissions=$1
shift
[ -d "$submissions" ] || { echo "$0: no folder $submissions" >&2; exit 2; }

tools/grade.sh --starter "$@"	# once, before the students run side by side
out=build/grade
mkdir -p "$out"
ls "$submissions" | while read -r name; do
	[ -d "$submissions/$name/chapters" ] && echo "$name"
done >"$out/students"
echo "grading $(wc -l <"$out/students") submissions, $jobs at a time"
export submissions out
xargs -P "$jobs" -I {} sh -c '
	name=$1
	shift
	mkdir -p "$out/$name"
	if tools/grade.sh "$submissions/$name" "$@" >"$out/$name/report.txt" 2>&1; then
		echo "$name: $(grep "^score: " "$out/$name/report.txt")"
	else
		echo "$name: could not be graded (see $out/$name/report.txt)"
	fi' sh {} "$@" <"$out/students"

# One row a student: the TODOs in the order of tests/points.
todos=$(awk '!/^#/ && NF == 3 { print $1 "/" $2 }' tests/points)
{
	printf 'student,total,max'
	for t in $todos; do printf ',%s' "$t"; done
	printf '\n'
	while read -r name; do
		awk -v name="$name" -v todos="$todos" '
		/^[0-9][0-9]-/ && NF >= 3 { split($3, p, "/"); got[$1 "/" $2] = p[1] }
		/^score: / { split($2, s, "/"); total = s[1]; max = s[2] }
		END { printf "%s,%s,%s", name, total, max
			n = split(todos, t, " ")
			for (i = 1; i <= n; i++) printf ",%s", (t[i] in got) ? got[t[i]] : ""
			printf "\n" }' "$out/$name/report.txt"
	done <"$out/students"
} >"$out/grades.csv"
echo "wrote $out/grades.csv"
