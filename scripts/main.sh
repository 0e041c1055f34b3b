#!/usr/bin/env bash
# The main job: set up, train SAC on Pendulum-v1, and write the run folder with its
# summary.json (the report), metrics.csv, TensorBoard events and checkpoints.
# Extra arguments go to `tandem train`, e.g. scripts/main.sh --steps 5000 --env HalfCheetah-v5
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
out="runs/sac_pendulum_$(date +%Y%m%d-%H%M%S)"
.venv/bin/tandem train sac --env Pendulum-v1 --steps 20000 --seed 0 --out "$out" "$@"
echo "report: $out/summary.json"
cat "$out/summary.json"
