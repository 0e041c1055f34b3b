#!/usr/bin/env bash
# Create .venv (if missing) and install tandem with its test dependencies, and the headless
# Chromium the report test renders in (Debian's package). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'

if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo -n"; fi
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the report test"
    $SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || {
      $SUDO apt-get update -qq >/dev/null 2>&1 &&
        $SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } ||
      echo "WARNING: could not install chromium; tests/test_report.py will fail" >&2
  else
    echo "WARNING: no apt-get: install Chromium so that tests/test_report.py can run" >&2
  fi
fi
