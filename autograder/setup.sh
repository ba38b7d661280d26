#!/bin/sh
# Gradescope runs this once, as root, when it builds the autograder's image
# (Ubuntu): what `make check` installs, and make itself. The course is in
# /autograder/source (the zip that `make gradescope` makes).
set -eu
apt-get update
apt-get install -y --no-install-recommends make git
cd /autograder/source
tools/install-deps.sh
