#!/usr/bin/env bash
# Flakiness check: the healthy suite run repeated N times one after another, then N times
# under pabot. One summary line per run and a total; exits 1 if any run had a failure.
#
#   bash tools/flakiness.sh [N]        N defaults to 20
#
# Environment:
#   PYTHON                 interpreter with the kit installed (default: python)
#   FLAKINESS_OUT          folder for every run's output (default: a new temporary folder)
#   FLAKINESS_PROCESSES    pabot processes (default 4)
#   FLAKINESS_ROBOT_ARGS   extra robot/pabot options, e.g. "--exclude concurrency"
# E2E_REFERENCE_FAULTS is cleared: this measures the healthy run. Any other E2E_* setting
# (e.g. E2E_TARGET) is kept, so the same check can be pointed at another target.
set -uo pipefail

N="${1:-20}"
if ! [[ "$N" =~ ^[1-9][0-9]*$ ]]; then
    echo "flakiness.sh: N must be a whole number >= 1, got '$N'" >&2
    exit 2
fi
cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-python}"
OUT="${FLAKINESS_OUT:-$(mktemp -d -t flakiness.XXXXXX)}"
PROCESSES="${FLAKINESS_PROCESSES:-4}"
read -r -a EXTRA <<< "${FLAKINESS_ROBOT_ARGS:-}"
unset E2E_REFERENCE_FAULTS
mkdir -p "$OUT"

# Prints "<total> <passed> <failed> <skipped>|<failed test names, '; '-separated>" for an output.xml.
summarise() {
    "$PY" - "$1" <<'EOF'
import sys
from pathlib import Path
if not Path(sys.argv[1]).is_file():
    print("0 0 0 0|no output.xml written")
    sys.exit()
from robot.api import ExecutionResult, ResultVisitor
class Failed(ResultVisitor):
    names = []
    def visit_test(self, test):
        if test.status == "FAIL":
            self.names.append(test.name)
result = ExecutionResult(sys.argv[1])
result.visit(Failed())
failed = Failed.names
s = result.statistics.total
print(f"{s.total} {s.passed} {s.failed} {s.skipped}|{'; '.join(failed)}")
EOF
}

runs=0
bad_runs=0
failed_tests=0
run_one() {  # mode index
    local mode="$1" i="$2" dir="$OUT/$1-$2" start end secs rc summary counts names total passed failed skipped
    start=$(date +%s.%N)
    if [ "$mode" = serial ]; then
        "$PY" -m robot --outputdir "$dir" --console none "${EXTRA[@]}" suites/staging >"$dir.console.txt" 2>&1
    else
        "$PY" -m pabot.pabot --processes "$PROCESSES" --pabotlibport 0 --outputdir "$dir" "${EXTRA[@]}" \
            suites/staging >"$dir.console.txt" 2>&1
    fi
    rc=$?
    end=$(date +%s.%N)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    summary=$(summarise "$dir/output.xml")
    counts="${summary%%|*}"
    names="${summary#*|}"
    read -r total passed failed skipped <<< "$counts"
    runs=$((runs + 1))
    if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$total" -eq 0 ]; then
        bad_runs=$((bad_runs + 1))
        failed_tests=$((failed_tests + failed))
        echo "$mode run $i/$N: FAIL rc=$rc $total tests, $passed passed, $failed failed, $skipped skipped (${secs}s): ${names:-see $dir.console.txt}"
    else
        echo "$mode run $i/$N: PASS $total tests, $passed passed, $failed failed, $skipped skipped (${secs}s)"
    fi
}

for i in $(seq 1 "$N"); do run_one serial "$i"; done
for i in $(seq 1 "$N"); do run_one pabot "$i"; done

echo "TOTAL: $runs runs ($N serial, $N pabot x$PROCESSES), $bad_runs with failures, $failed_tests failed tests; output in $OUT"
[ "$bad_runs" -eq 0 ]
