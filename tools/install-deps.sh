#!/bin/sh
# Installs what the course needs from Debian's (or Ubuntu's) packages, and
# only what is missing, saying each command before it runs it.
#
#   install-deps.sh          what `make check` needs: a C compiler, make,
#                            pkg-config, Check and Valgrind
#   install-deps.sh build    what `make run` needs: a C compiler and make
#   install-deps.sh extras   the optional extras as well: clang, netcat,
#                            python3-gevent, gnuplot, golang
set -eu

what=${1:-test}

missing=""
need() {	# need PACKAGE TEST-COMMAND...
	package=$1
	shift
	if ! "$@" >/dev/null 2>&1; then
		missing="$missing $package"
	fi
}

need gcc command -v "${CC:-cc}"
need make command -v make
case $what in
build) ;;
test | extras)
	need pkg-config command -v pkg-config
	need check pkg-config --exists check
	need valgrind command -v valgrind
	;;
*)
	echo "usage: $0 [build|test|extras]" >&2
	exit 2
	;;
esac
if [ "$what" = extras ]; then
	need clang command -v clang
	need netcat-openbsd command -v nc
	need python3-gevent /usr/bin/python3 -c 'import gevent'
	need gnuplot-nox command -v gnuplot
	need golang-go command -v go
fi

[ -n "$missing" ] || exit 0

if [ "$(id -u)" -eq 0 ]; then
	sudo=""
elif command -v sudo >/dev/null 2>&1; then
	sudo="sudo"
else
	echo "Missing packages:$missing" >&2
	echo "Install them as root with:" >&2
	echo "  apt-get update && apt-get install -y$missing" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "Missing:$missing. This machine has no apt-get: install those with its" >&2
	echo "package manager (see docs/setup.md)." >&2
	exit 1
fi

echo "Installing what is missing:$missing"
echo "+ $sudo apt-get update"
$sudo apt-get update -q
echo "+ $sudo apt-get install -y --no-install-recommends$missing"
# shellcheck disable=SC2086 # word splitting of the package list is intended
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
