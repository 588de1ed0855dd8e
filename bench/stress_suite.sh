#!/usr/bin/env bash
# The whole test suite while `stress-ng --cpu N` loads every core (issue 20: the suite must not
# depend on a quiet machine). Prints the pass/fail counts and the wall time; exits with pytest's
# exit code. stress-ng is stopped on any exit (trap), Ctrl-C included.
#
#   bench/stress_suite.sh                     # stress-ng --cpu <cores>, then .venv/bin/python -m pytest
#   bench/stress_suite.sh -k lab              # extra arguments go to pytest
#   CPUS=2 PYTEST=.venv/bin/python bench/stress_suite.sh
#
# Set EDGEGAUGE_QEMU_ARM64=1 to include the arm64 image build, as .ci/run does. The pytest log is
# kept in bench/out/stress_suite.log (git-ignored). Needs stress-ng (Debian/Ubuntu package
# stress-ng); it is never installed by this script.
set -uo pipefail
cd "$(dirname "$0")/.."

CPUS=${CPUS:-$(nproc)}
PYTHON=${PYTEST:-.venv/bin/python}
if ! command -v stress-ng >/dev/null 2>&1; then
    echo "stress-ng is not installed; install it first, e.g. as root:" >&2
    echo "    apt-get update && apt-get install -y stress-ng" >&2
    exit 2
fi
if [ ! -x "$PYTHON" ]; then
    echo "$PYTHON not found: create the venv first (README, the two set-up commands)" >&2
    exit 2
fi

mkdir -p bench/out
log=bench/out/stress_suite.log
stress_pid=
stop_stress() {
    if [ -n "$stress_pid" ] && kill -0 "$stress_pid" 2>/dev/null; then
        kill -TERM "$stress_pid" 2>/dev/null
        wait "$stress_pid" 2>/dev/null
    fi
    stress_pid=
}
trap stop_stress EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stress-ng --cpu "$CPUS" --timeout 0 --quiet &
stress_pid=$!
sleep 1
if ! kill -0 "$stress_pid" 2>/dev/null; then
    echo "stress-ng --cpu $CPUS did not start" >&2
    exit 2
fi
echo "stress-ng --cpu $CPUS running (pid $stress_pid); pytest log: $log"

start=$(date +%s)
"$PYTHON" -m pytest -q -p no:cacheprovider "$@" >"$log" 2>&1
rc=$?
wall=$(( $(date +%s) - start ))
stop_stress

summary=$(grep -E '[0-9]+ (passed|failed|errors?|skipped).* in [0-9.]+s' "$log" | tail -n 1)
count() { echo "$summary" | grep -oE "[0-9]+ $1" | grep -oE '^[0-9]+' || echo 0; }
printf 'under stress-ng --cpu %s: %s passed, %s failed, %s errors, %s skipped; wall %d min %02d s; pytest exit %s\n' \
    "$CPUS" "$(count passed)" "$(count failed)" "$(count error)" "$(count skipped)" \
    $((wall / 60)) $((wall % 60)) "$rc"
grep -E '^(FAILED|ERROR) ' "$log" || true
exit "$rc"
