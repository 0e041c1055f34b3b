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
  for id in $ids; do
    s=$SECONDS
    if timeout 1500 .venv/bin/python -m pytest -q -p no:cacheprovider -m "$MARK" \
        -o timeout_method=thread "$id" > .step2.log 2>&1; then
      echo "  ok      $((SECONDS - s)) s  $id"
    else
      echo "  FAILED  $((SECONDS - s)) s  $id"
      tail -n 60 .step2.log
      failed=1
    fi
  done
  rm -f .step2.log
  echo "== step 2 took $((SECONDS - t2)) s"
  [ "$failed" = 0 ]
fi
