#!/bin/sh
# make check-grading: the grading tools and the autograders' files, proved on
# a handout of chapters 01-02 in build/grading:
#   1. a student who solved chapter 01 (and added TEST_RUNNER = true to
#      chapter 02's build.mk, which must change nothing) gets every point of
#      chapter 01 and none of chapter 02: the starters' free passes count
#      for nothing;
#   2. results.json has the fields Gradescope documents (score, tests with
#      name, score, max_score, output, visibility) and the same total;
#   3. the handout's GitHub Classroom workflow is valid YAML with a step per
#      chapter, worth the chapter's points.
# Parts 2 and 3 read JSON and YAML with python3 (and python3-yaml); without
# them they say they were skipped.
set -eu

work=build/grading
rm -rf "$work"
mkdir -p "$work"
tools/handout.sh "$work/student" 02 >/dev/null
cp solutions/01-blocking/*.c "$work/student/chapters/01-blocking/"
echo 'TEST_RUNNER = true' >>"$work/student/chapters/02-threads/build.mk"

RESULTS=$work/results.json GRADE_DIR=$work/grade tools/grade.sh "$work/student" >"$work/table"
cat "$work/table"
status=0
expected=$(awk '$1 == "01-blocking" { sum += $3 } END { print sum }' tests/points)
max=$(awk '$1 == "01-blocking" || $1 == "02-threads" { sum += $3 } END { print sum }' tests/points)
if ! grep -qx "score: $expected/$max" "$work/table"; then
	echo "check-grading: expected score: $expected/$max (chapter 01 solved, chapter 02 the starter)"
	status=1
fi

if ! command -v python3 >/dev/null 2>&1; then
	echo "check-grading: SKIPPED the results.json and workflow checks: no python3"
	exit $status
fi
python3 - "$work/results.json" "$expected" <<'PY' || status=1
import json, sys
results = json.load(open(sys.argv[1]))
expected = int(sys.argv[2])
def fail(why):
    sys.exit("check-grading: results.json: " + why)
if not isinstance(results.get("score"), (int, float)):
    fail("no numeric score")
if results["score"] != expected:
    fail("score %s, expected %s" % (results["score"], expected))
tests = results.get("tests")
if not isinstance(tests, list) or not tests:
    fail("no tests")
for t in tests:
    for field, kind in (("name", str), ("score", (int, float)), ("max_score", (int, float)),
                        ("output", str), ("visibility", str)):
        if not isinstance(t.get(field), kind):
            fail("test %r: field %s missing or of the wrong type" % (t.get("name"), field))
    if t["visibility"] not in ("hidden", "after_due_date", "after_published", "visible"):
        fail("test %r: visibility %r" % (t["name"], t["visibility"]))
if sum(t["score"] for t in tests) != results["score"]:
    fail("the tests' scores do not add up to the total")
print("check-grading: results.json has Gradescope's fields, total %s" % results["score"])
PY
if ! python3 -c 'import yaml' 2>/dev/null; then
	echo "check-grading: SKIPPED the workflow check: no python3-yaml"
	exit $status
fi
python3 - "$work/student/.github/workflows/classroom.yml" tests/points <<'PY' || status=1
import sys, yaml
workflow = yaml.safe_load(open(sys.argv[1]))
points = {}
for line in open(sys.argv[2]):
    words = line.split()
    if len(words) == 3 and not line.startswith("#"):
        points[words[0]] = points.get(words[0], 0) + int(words[2])
steps = workflow["jobs"]["run-autograding-tests"]["steps"]
graders = {s["with"]["test-name"]: s for s in steps
           if s.get("uses", "").startswith("classroom-resources/autograding-command-grader")}
for chapter in ("01-blocking", "02-threads"):
    step = graders.get(chapter)
    if step is None:
        sys.exit("check-grading: the workflow has no step for " + chapter)
    if int(step["with"]["max-score"]) != points[chapter]:
        sys.exit("check-grading: %s is worth %s in the workflow, %s in tests/points"
                 % (chapter, step["with"]["max-score"], points[chapter]))
reporter = [s for s in steps if s.get("uses", "").startswith("classroom-resources/autograding-grading-reporter")]
runners = reporter[0]["with"]["runners"].split(",") if reporter else []
if sorted(runners) != sorted(s["id"] for s in graders.values()):
    sys.exit("check-grading: the reporter's runners are not the graders' ids")
print("check-grading: the Classroom workflow has a step per chapter, worth its points")
PY
[ $status -eq 0 ] && echo "check-grading: all passed"
exit $status
