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
  # -v: one line per test as it finishes; a test stuck past its timeout is killed with a
  # stack dump of every thread (timeout_method=thread works even inside native code)
  .venv/bin/python -m pytest -v -m "learning or slow" --durations=0 -o timeout_method=thread
  echo "== step 2 took $((SECONDS - t2)) s"
fi
