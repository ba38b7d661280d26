#!/bin/sh
# Installs what the course needs from Debian's (or Ubuntu's) packages, and
# only what is missing, saying each command before it runs it.
#
#   install-deps.sh          what `make check` needs: a C compiler, make,
#                            pkg-config, Check, Valgrind and liburing
#   install-deps.sh build    what `make run` needs: a C compiler, make,
#                            pkg-config and liburing (chapter 09's io_uring)
#   install-deps.sh extras   the optional extras as well: clang, netcat,
#                            python3-gevent, python3-yaml (make
#                            check-grading), gnuplot, golang
#   install-deps.sh cross    what `make check ARCH=aarch64` needs on another
#                            CPU: the AArch64 cross compiler and C library,
#                            qemu-user, and Check and liburing for arm64
#                            (Debian multiarch)
set -eu

what=${1:-test}

missing=""
foreign=""	# a Debian architecture to add (dpkg --add-architecture) first
need() {	# need PACKAGE TEST-COMMAND...
	package=$1
	shift
	if ! "$@" >/dev/null 2>&1; then
		missing="$missing $package"
	fi
}

case ${CC:-cc} in
clang*) compiler=clang ;;
*) compiler=gcc ;;
esac
need "$compiler" command -v "${CC:-cc}"
need make command -v make
case $what in
build)
	need pkg-config command -v pkg-config
	need liburing-dev pkg-config --exists liburing
	;;
test | extras)
	need pkg-config command -v pkg-config
	need check pkg-config --exists check
	need valgrind command -v valgrind
	need liburing-dev pkg-config --exists liburing
	;;
cross)
	need pkg-config command -v pkg-config
	# Without its C library (only recommended, and recommends are not
	# installed) the cross compiler would read the host's /usr/include.
	need gcc-aarch64-linux-gnu command -v aarch64-linux-gnu-gcc
	need libc6-dev-arm64-cross test -e /usr/aarch64-linux-gnu/include/stdio.h
	need qemu-user command -v qemu-aarch64
	# Check for arm64 comes as Debian's own arm64 package; it brings the
	# arm64 C library that qemu-aarch64 runs the tests with.
	need check:arm64 env PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig \
		pkg-config --exists check
	need liburing-dev:arm64 env PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig \
		pkg-config --exists liburing
	case " $missing " in
	*" check:arm64 "* | *" liburing-dev:arm64 "*)
		dpkg --print-foreign-architectures | grep -qx arm64 || foreign=arm64
		;;
	esac
	;;
*)
	echo "usage: $0 [build|test|extras|cross]" >&2
	exit 2
	;;
esac
if [ "$what" = extras ]; then
	need clang command -v clang
	need netcat-openbsd command -v nc
	need python3-gevent /usr/bin/python3 -c 'import gevent'
	need python3-yaml /usr/bin/python3 -c 'import yaml'
	need gnuplot-nox command -v gnuplot
	need golang-go command -v go
fi

[ -n "$missing" ] || exit 0

if [ "$(id -u)" -eq 0 ]; then
	sudo=""
	run_as=""
elif command -v sudo >/dev/null 2>&1; then
	sudo="sudo"
	run_as="sudo "
else
	echo "Missing packages:$missing" >&2
	echo "Install them as root with:" >&2
	[ -z "$foreign" ] || echo "  dpkg --add-architecture $foreign" >&2
	echo "  apt-get update && apt-get install -y$missing" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "Missing:$missing. This machine has no apt-get: install those with its" >&2
	echo "package manager (see docs/setup.md)." >&2
	exit 1
fi

echo "Installing what is missing:$missing"
if [ -n "$foreign" ]; then
	echo "+ ${run_as}dpkg --add-architecture $foreign"
	$sudo dpkg --add-architecture "$foreign"
fi
echo "+ ${run_as}apt-get update"
if ! $sudo apt-get update -q; then
	# Ubuntu, for one, serves arm64 from its ports archive, not from the one
	# its sources name: every apt-get update would fail from now on. Undo.
	if [ -n "$foreign" ]; then
		echo "+ ${run_as}dpkg --remove-architecture $foreign"
		$sudo dpkg --remove-architecture "$foreign"
		echo "apt-get update failed once $foreign was added: this machine's package" >&2
		echo "sources do not serve $foreign. Add a source that does (on Ubuntu, its" >&2
		echo "ports archive, for $foreign only), then run this again." >&2
	fi
	exit 1
fi
echo "+ ${run_as}apt-get install -y --no-install-recommends$missing"
# shellcheck disable=SC2086 # word splitting of the package list is intended
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
