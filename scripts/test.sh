#!/usr/bin/env bash
# Set up, then run the tests in two steps: the default suite (a few minutes), then the
# marked learning tests (agents must really learn; several minutes). --quick skips step 2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export JAX_PLATFORMS=cpu OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
echo "== step 1: default test suite"
.venv/bin/python -m pytest -q
if [ "${1:-}" != "--quick" ]; then
  echo "== step 2: learning tests"
  .venv/bin/python -m pytest -q -m learning
fi
