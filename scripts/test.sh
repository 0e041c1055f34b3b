#!/usr/bin/env bash
# Set up, then run the tests in two steps: the default suite (a few minutes), then the
# marked learning tests (agents must really learn) and slow reliability tests (20 SIGKILLs);
# several minutes. --quick skips step 2.
# Each step prints its wall time and the slowest tests, so a slow CI run shows where it went.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
bash scripts/setup.sh
echo "== set-up took $((SECONDS - t0)) s"
export JAX_PLATFORMS=cpu OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
echo "== step 1: default test suite"
t1=$SECONDS
.venv/bin/python -m pytest -q --durations=10
echo "== step 1 took $((SECONDS - t1)) s"
if [ "${1:-}" != "--quick" ]; then
  echo "== step 2: learning and slow reliability tests"
  t2=$SECONDS
  # Each test in its own process, with its own wall-time limit: one test's state (JAX's
  # thread pools, compiled programs, a local Ray) cannot slow or stall the next, and a test
  # stuck past its pytest timeout is killed with a stack dump of every thread
  # (timeout_method=thread works even inside native code; `timeout` is the last resort).
  MARK="learning or slow"
  ids=$(.venv/bin/python -m pytest --collect-only -q -m "$MARK" | grep "::")
  failed=0
  set -f  # node ids such as test_x[0] are not glob patterns
  # pytest-timeout's dump shows Python frames only; a hang inside XLA or another native
  # library shows only in native stacks, so 30 s before it fires gdb (where installed)
  # records every thread's stack, printed condensed if the test then fails.
  PER_TEST=900
  for id in $ids; do
    s=$SECONDS
    rm -f .step2.gdb
    timeout 1500 .venv/bin/python -m pytest -q -p no:cacheprovider -m "$MARK" \
        -o timeout=$PER_TEST -o timeout_method=thread "$id" > .step2.log 2>&1 &
    tpid=$!
    ( sleep $((PER_TEST - 30))
      pid=$(pgrep -P "$tpid" | head -n 1)
      if [ -n "$pid" ] && command -v gdb > /dev/null; then
        gdb -p "$pid" -batch -ex "thread apply all bt" > .step2.gdb 2>&1 || true
      fi ) &
    wpid=$!
    rc=0; wait "$tpid" || rc=$?
    pkill -P "$wpid" 2> /dev/null || true; kill "$wpid" 2> /dev/null || true
    wait "$wpid" 2> /dev/null || true
    if [ "$rc" = 0 ]; then
      echo "  ok      $((SECONDS - s)) s  $id"
    else
      echo "  FAILED  $((SECONDS - s)) s  $id"
      tail -n 60 .step2.log
      if [ -s .step2.gdb ]; then
        echo "  native stacks 30 s before the timeout (scripts/stacks.py):"
        .venv/bin/python scripts/stacks.py .step2.gdb | cut -c1-600
      fi
      failed=1
    fi
  done
  rm -f .step2.log .step2.gdb
  echo "== step 2 took $((SECONDS - t2)) s"
  [ "$failed" = 0 ]
fi
