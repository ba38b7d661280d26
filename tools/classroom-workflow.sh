#!/bin/sh
# Writes the GitHub Classroom workflow from tests/points: one autograding
# step per chapter, `make check CH=NN` on the student's repository, worth the
# points of that chapter's TODOs, and the reporter that sends the total to
# Classroom. make handout puts it in the handout as
# .github/workflows/classroom.yml, for the chapters it releases.
#
#   classroom-workflow.sh [CHAPTER...]     default: every chapter with points
set -eu

points=tests/points
chapters=${*:-$(awk '!/^#/ && NF == 3 { print $1 }' "$points" | uniq)}

cat <<'HEAD'
# GitHub Classroom autograding, made by tools/classroom-workflow.sh from the
# course's tests/points.
name: Autograding Tests
"on":
  - push
  - workflow_dispatch
  - repository_dispatch
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    steps:
      - name: Checkout code
        uses: actions/checkout@v4
      - name: Install what the course needs
        run: sudo tools/install-deps.sh
HEAD
for ch in $chapters; do
	n=${ch%%-*}
	max=$(awk -v ch="$ch" '$1 == ch { sum += $3 } END { print sum }' "$points")
	cat <<STEP
      - name: Chapter $ch
        id: chapter-$n
        uses: classroom-resources/autograding-command-grader@v1
        with:
          test-name: $ch
          command: make check CH=$n
          timeout: 10
          max-score: $max
STEP
done
runners=$(for ch in $chapters; do printf 'chapter-%s,' "${ch%%-*}"; done)
cat <<REPORTER
      - name: Autograding Reporter
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
REPORTER
for ch in $chapters; do
	n=${ch%%-*}
	printf '          CHAPTER-%s_RESULTS: "${{ steps.chapter-%s.outputs.result }}"\n' "$n" "$n"
done
cat <<RUNNERS
        with:
          runners: ${runners%,}
RUNNERS
