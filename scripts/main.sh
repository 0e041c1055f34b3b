#!/usr/bin/env bash
# The main job: set up, train SAC on Pendulum-v1 with 3 seeds (evaluated every 1,500 steps),
# and write the HTML report (learning curves with 95% bands, IQM with bootstrap intervals, a
# GIF of the final policy) next to the sweep folder.
# Extra arguments go to `tandem train`, e.g. scripts/main.sh --steps 5000 --env HalfCheetah-v5
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
out="runs/sac_pendulum_$(date +%Y%m%d-%H%M%S)"
.venv/bin/tandem train sac --env Pendulum-v1 --steps 15000 --seeds 0-2 --eval-every 1500 \
  --out "$out" "$@"
.venv/bin/tandem report "$out" --out "$out/report" --title "SAC on Pendulum-v1, 3 seeds"
echo "report: $out/report/index.html"
cat "$out/summary.json"
