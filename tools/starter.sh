#!/bin/sh
# Makes a chapter's starter code from its solution by cutting out the marked
# exercises (see docs/instructor-guide.md, "Writing an exercise"):
#
#   /* EXERCISE name: what to do, in one line      <- becomes "/* TODO name: ..."
#    * more of the TODO text: a hint, the tests that check it
#    */
#   ...the solution's lines...                      <- cut out
#   /* STUB: code */                                <- becomes "code" (any number)
#   /* END name */                                  <- cut out
#
# The markers are C comments, so they work in .c, .h and preprocessed .S files.
#
#   starter.sh list SRC_DIR               the exercise names in a solution
#   starter.sh cut SRC_DIR DST_DIR [NAME] copy SRC_DIR to DST_DIR with every
#                                         exercise cut out, or only NAME
#   starter.sh freeze FILE                FILE as a later chapter ships it: the
#                                         answers kept, the markers and the
#                                         TODO text taken out, under a header
#                                         that names FILE
set -eu

usage() {
	echo "usage: $0 list SRC_DIR | cut SRC_DIR DST_DIR [NAME] | freeze FILE" >&2
	exit 2
}

# The awk program reads one file and writes its starter version to stdout.
# only: cut just this exercise ("" cuts them all).
cut_file() {
	awk -v only="$2" -v file="$1" '
	function fail(msg) { printf "%s:%d: %s\n", file, NR, msg > "/dev/stderr"; failed = 1; exit 1 }
	function cutting() { return only == "" || only == name }
	BEGIN { state = "code" }
	state == "code" && /^[ \t]*\/\* EXERCISE [a-z0-9_]+:/ {
		name = $0; sub(/^[ \t]*\/\* EXERCISE /, "", name); sub(/:.*/, "", name)
		line = $0
		if (cutting()) sub(/\/\* EXERCISE /, "/* TODO ", line)
		print line
		nstubs = 0
		state = ($0 ~ /\*\//) ? "body" : "head"
		next
	}
	state == "code" && /\/\* (EXERCISE|STUB:|END) / { fail("marker outside an exercise: " $0) }
	state == "code" { print; next }
	state == "head" { print; if ($0 ~ /\*\//) state = "body"; next }
	# state == "body"
	/\/\* EXERCISE / { fail("exercise " name " is not closed before the next one") }
	/^[ \t]*\/\* STUB: .* \*\/[ \t]*$/ {
		stub = $0
		indent = stub; sub(/\/\*.*/, "", indent)
		sub(/^[ \t]*\/\* STUB: /, "", stub); sub(/ \*\/[ \t]*$/, "", stub)
		stubs[++nstubs] = indent stub
		if (!cutting()) print
		next
	}
	/^[ \t]*\/\* END [a-z0-9_]+ \*\/[ \t]*$/ {
		end = $0; sub(/^[ \t]*\/\* END /, "", end); sub(/ \*\/[ \t]*$/, "", end)
		if (end != name) fail("END " end " closes exercise " name)
		if (cutting()) { for (i = 1; i <= nstubs; i++) print stubs[i] } else print
		state = "code"
		next
	}
	{ if (!cutting()) print }
	END { if (!failed && state != "code") fail("exercise " name " has no END marker") }
	' "$1"
}

list() {
	grep -rhoE '^[[:space:]]*/\* EXERCISE [a-z0-9_]+:' "$1" 2>/dev/null |
		sed -E 's/.*EXERCISE ([a-z0-9_]+):/\1/' | awk '!seen[$0]++'
}

cut_tree() {
	src=$1 dst=$2 only=${3:-}
	[ -d "$src" ] || { echo "$0: no such folder: $src" >&2; exit 1; }
	if [ -n "$only" ] && ! list "$src" | grep -qx "$only"; then
		echo "$0: $src has no exercise named $only" >&2
		exit 1
	fi
	rm -rf "$dst"
	mkdir -p "$dst"
	(cd "$src" && find . -type f) | sort | while read -r f; do
		mkdir -p "$dst/$(dirname "$f")"
		case $f in
		*.c | *.h | *.S) cut_file "$src/$f" "$only" > "$dst/$f" ;;
		*) cp "$src/$f" "$dst/$f" ;;
		esac
	done
}

# A solution's file with its exercises solved and no trace of them: a later
# chapter that builds an earlier chapter's program unchanged ships this copy,
# so that it builds the same whatever the student's earlier chapter holds.
# The first line names the source; check-starters.sh checks the copy.
freeze() {
	printf '/* Frozen copy of %s\n' "$1"
	printf ' * (tools/starter.sh freeze): its answers in place, its TODO text taken\n'
	printf ' * out. Edit the original and run make starters: this copy is checked. */\n'
	awk -v file="$1" '
	function fail(msg) { printf "%s:%d: %s\n", file, NR, msg > "/dev/stderr"; exit 1 }
	BEGIN { state = "code" }
	state == "code" && /^[ \t]*\/\* EXERCISE [a-z0-9_]+:/ {
		state = ($0 ~ /\*\//) ? "body" : "head"; next }
	state == "head" { if ($0 ~ /\*\//) state = "body"; next }
	state == "body" && /^[ \t]*\/\* STUB: .* \*\/[ \t]*$/ { next }
	state == "body" && /^[ \t]*\/\* END [a-z0-9_]+ \*\/[ \t]*$/ { state = "code"; next }
	{ print }
	END { if (state != "code") fail("an exercise has no END marker") }
	' "$1"
}

[ $# -ge 1 ] || usage
command=$1
shift
case $command in
list)
	[ $# -eq 1 ] || usage
	list "$1"
	;;
cut)
	if [ $# -lt 2 ] || [ $# -gt 3 ]; then usage; fi
	cut_tree "$@"
	;;
freeze)
	[ $# -eq 1 ] || usage
	freeze "$1"
	;;
*) usage ;;
esac
