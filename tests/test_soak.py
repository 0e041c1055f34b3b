"""The 1-hour soak (issue #7), run by hand, not in CI: ``pytest -m soak -s``.

SAC trains on Pendulum-v1 in a subprocess for TANDEM_SOAK_SECONDS (default 3,600) with a
checkpoint and a 10-episode evaluation every 5,000 steps, while the test samples the
process's resident memory (VmRSS) every 15 s. The replay buffer (50,000 transitions) is full
after a few minutes; from then on memory must stay flat: the last quarter's mean may exceed
the second quarter's by at most 5% (and 50 MiB). The samples are written to
TANDEM_SOAK_REPORT (default benchmarks/results/soak.json).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SECONDS = float(os.environ.get("TANDEM_SOAK_SECONDS", 3600))


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@pytest.mark.soak
@pytest.mark.timeout(SECONDS + 600)
def test_soak_memory_stays_flat(tmp_path):
    run = tmp_path / "soak"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.cli", "train", "sac", "--env", "Pendulum-v1",
         "--steps", "10000000", "--buffer-size", "50000", "--checkpoint-every", "5000",
         "--eval-every", "5000", "--eval-episodes", "10", "--log-every", "5000",
         "--out", str(run), "--progress", "lines"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    t0, samples = time.time(), []
    try:
        while time.time() - t0 < SECONDS:
            assert proc.poll() is None, "training stopped during the soak"
            rss = _rss_mib(proc.pid)
            if rss is not None and time.time() - t0 >= 60:  # past start-up and compiling
                samples.append((round(time.time() - t0, 1), round(rss, 1)))
            time.sleep(15)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: checkpoint and stop
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    steps = max(int(r[0]) for r in rows)
    evals = sum(1 for r in rows if r[1] == "eval/return_mean")
    n = len(samples)
    assert n >= 8, f"too short a soak for a verdict ({n} samples)"
    q2 = [m for _, m in samples[n // 4: n // 2]]
    q4 = [m for _, m in samples[3 * n // 4:]]
    report = {"seconds": SECONDS, "env_steps": steps, "evaluations": evals,
              "checkpoints_written": steps // 5000, "rss_mib_first": samples[0][1],
              "rss_mib_q2_mean": sum(q2) / len(q2), "rss_mib_q4_mean": sum(q4) / len(q4),
              "rss_mib_max": max(m for _, m in samples), "samples": samples,
              "load_at_end": os.getloadavg()}
    out = Path(os.environ.get("TANDEM_SOAK_REPORT", "benchmarks/results/soak.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print({k: v for k, v in report.items() if k != "samples"})
    growth = report["rss_mib_q4_mean"] - report["rss_mib_q2_mean"]
    assert growth <= max(0.05 * report["rss_mib_q2_mean"], 50), report
