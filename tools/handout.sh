#!/bin/sh
# `make handout DEST=DIR [UPTO=NN]`: what students get, as a git repository
# of its own: the starters of chapters 01..NN (all of them by default) with
# their lessons and tests, the harness, the tools and docs a student uses. No
# solutions, no answer to any TODO, no instructor material, no history.
#
# Run it again on the same DIR with a larger UPTO to release the next
# chapters, as one more commit: the chapters released before are left as they
# are (students have worked in them); the shared files are brought up to date.
#
#   handout.sh DEST [UPTO]      make or extend the handout
#   handout.sh --check DEST     check that it leaks no answer: no exercise
#                               body of a chapter k it holds appears in its
#                               chapters 01..k, nor anywhere outside chapters/
set -eu

usage() {
	echo "usage: $0 DEST [UPTO] | --check DEST" >&2
	exit 2
}

# What a handout holds besides the chapters, by name: a file added to the
# course later is instructor-only until it is listed here.
SHARED_FILES="README.md Makefile .gitignore mk common tests/lib tests/all-chapters tests/coroutines
	tools/install-deps.sh tools/progress.sh tools/compare.sh tools/client.c tools/loadgen tools/peers
	docs/protocol.md docs/setup.md docs/benchmarks.md docs/benchmarks.png .devcontainer"

chapters_upto() {	# the chapter folders of the course up to $1 (all if empty)
	for ch in $(ls solutions); do
		case $ch in [0-9][0-9]-*) ;; *) continue ;; esac
		if [ -n "$1" ] && [ "${ch%%-*}" -gt "$1" ]; then break; fi
		echo "$ch"
	done
}

# The awk function that puts a line in the form in which answers are looked
# for: without comments (they may span lines) and without spacing, so that a
# copy with other comments or indentation is still the answer.
CLEAN='
function clean(s,   out, i) {
	out = ""
	while (s != "") {
		if (in_comment) {
			i = index(s, "*/")
			if (i == 0) return ""
			s = substr(s, i + 2)
			in_comment = 0
		} else {
			i = index(s, "/*")
			if (i == 0) { out = out s; break }
			out = out substr(s, 1, i - 1)
			s = substr(s, i + 2)
			in_comment = 1
		}
	}
	gsub(/[ \t]+/, " ", out)
	gsub(/^ | $/, "", out)
	return out
}'

# An exercise's body, line by line in that form, blank lines left out. One
# file per exercise and source file (switch is in two), CHAPTER.NAME.FILE.
bodies() {	# bodies CHAPTER OUTDIR
	for f in "solutions/$1"/*.c "solutions/$1"/*.h "solutions/$1"/*.S; do
		[ -e "$f" ] || continue
		awk -v out="$2/$1." "$CLEAN"'
		/^[ \t]*\/\* EXERCISE [a-z0-9_]+:/ { name = $0; sub(/.*EXERCISE /, "", name); sub(/:.*/, "", name)
			state = ($0 ~ /\*\//) ? "body" : "head"; next }
		state == "head" { if ($0 ~ /\*\//) state = "body"; next }
		state == "body" && /^[ \t]*\/\* END [a-z0-9_]+ \*\/[ \t]*$/ { state = ""; next }
		state == "body" && /^[ \t]*\/\* STUB: / { next }
		state == "body" { line = clean($0); if (line != "") print line > (out name "." base) }
		' base="${f##*/}" "$f"
	done
}

# Which of the files hold this body, its lines one after another in that
# form, give or take one line in eight (a copy with a line altered is still
# the answer)? A body of eight lines or more is also found with other names
# and numbers in it: its shape, every identifier and number one letter.
holders() {	# holders BODY FILE...
	body=$1
	shift
	awk -v bodyfile="$body" "$CLEAN"'
	function shape(s) { gsub(/[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9a-fx]*/, "w", s); return s }
	function found(body, text,   i, j, differ) {
		for (i = 1; i + n - 1 <= m; i++) {
			differ = 0
			for (j = 1; j <= n && differ <= allowed; j++)
				differ += text[i + j - 1] != body[j]
			if (differ <= allowed) return 1
		}
		return 0
	}
	function judge() {
		if (m > 0 && (found(body, text) || (n >= 8 && found(body_shape, text_shape))))
			print file
		m = 0
		in_comment = 0
	}
	BEGIN {
		while ((getline line < bodyfile) > 0) { body[++n] = line; body_shape[n] = shape(line) }
		allowed = int(n / 8)
	}
	FNR == 1 { judge(); file = FILENAME }
	{ line = clean($0); if (line != "") { text[++m] = line; text_shape[m] = shape(line) } }
	END { judge() }' "$@"
}

check() {
	dest=$1
	[ -d "$dest/chapters" ] || { echo "$0: $dest has no chapters/" >&2; exit 2; }
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	released=$(ls "$dest/chapters")
	for ch in $released; do
		bodies "$ch" "$work"
	done
	status=0
	for body in "$work"/*; do
		[ -e "$body" ] || continue
		name=${body##*/}
		ch=${name%%.*} todo=${name#*.}
		todo=${todo%%.*}
		# One short line could be anyone's: look for bodies of two lines
		# or more, or one long line.
		if [ "$(wc -l <"$body")" -lt 2 ] && [ "$(wc -c <"$body")" -lt 30 ]; then continue; fi
		# Chapters after ch carry its answers on purpose.
		files=$(cd "$dest" && find . -type f ! -path './.git/*' ! -name '*.png' | sed 's|^\./||' |
			awk -v ch="${ch%%-*}" '!/^chapters\// || substr($0, 10, 2) <= ch')
		for f in $(cd "$dest" && holders "$work/$name" $files); do
			echo "$dest/$f holds the answer to TODO $todo of $ch"
			status=1
		done
	done
	if [ $status -eq 0 ]; then
		echo "handout $dest: no answer to a TODO of chapters $(echo $released | tr ' ' ,) in it"
	fi
	return $status
}

make_handout() {
	dest=$1 upto=${2:-}
	if [ -e "$dest" ] && [ ! -d "$dest/.git" ]; then
		echo "$0: $dest exists and is not a handout (no .git): choose another DEST" >&2
		exit 2
	fi
	mkdir -p "$dest"
	[ -d "$dest/.git" ] || git -C "$dest" init -q
	before=$(ls "$dest/chapters" 2>/dev/null || true)

	# The shared files, afresh.
	for f in $SHARED_FILES; do
		[ -e "$f" ] || continue
		rm -rf "${dest:?}/$f"
		mkdir -p "$dest/$(dirname "$f")"
		cp -R "$f" "$dest/$f"
	done
	# The chapters not yet released, and their tests.
	added=""
	for ch in $(chapters_upto "$upto"); do
		if [ -d "$dest/chapters/$ch" ]; then continue; fi
		mkdir -p "$dest/chapters" "$dest/tests"
		cp -R "chapters/$ch" "$dest/chapters/$ch"
		cp -R "tests/$ch" "$dest/tests/$ch"
		added="$added $ch"
	done
	# Tests of chapters already released may have been fixed since.
	for ch in $before; do
		rm -rf "${dest:?}/tests/$ch"
		cp -R "tests/$ch" "$dest/tests/$ch"
	done
	# GitHub Classroom grades the chapters released so far.
	mkdir -p "$dest/.github/workflows"
	tools/classroom-workflow.sh $(ls "$dest/chapters") >"$dest/.github/workflows/classroom.yml"

	git -C "$dest" add -A
	if git -C "$dest" diff --cached --quiet; then
		echo "handout $dest: nothing new"
		return 0
	fi
	if [ -n "$added" ]; then
		message="Chapters$added"
	else
		message="Course files brought up to date"
	fi
	git -C "$dest" -c user.name="Green threads course" -c user.email=course@localhost \
		commit -q -m "$message"
	echo "handout $dest: $message ($(git -C "$dest" rev-list --count HEAD) commits)"
}

[ $# -ge 1 ] || usage
if [ "$1" = --check ]; then
	[ $# -eq 2 ] || usage
	check "$2"
	exit $?
fi
[ $# -le 2 ] || usage
[ -d solutions ] || { echo "$0: run it in the course repository (it has solutions/)" >&2; exit 2; }
make_handout "$@"
