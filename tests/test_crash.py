"""Crash safety (issue #7): a training process killed with SIGKILL at random moments, 20 times
and often in the middle of writing a checkpoint, always leaves a loadable latest checkpoint
(or none yet, which `tandem resume` restarts from step 0), and `tandem resume` carries the
run to its total with a metrics.csv that has no duplicate or partial rows."""

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tandem import load
from tandem.run.checkpoint import latest_checkpoint, load_checkpoint
from tandem.errors import CheckpointError

STEPS = 20_000  # enough that 20 sessions of up to ~0.4 s each never finish it
ARGS = ["--env", "Pendulum-v1", "--hidden-sizes", "16,16", "--batch-size", "32",
        "--learning-starts", "50", "--checkpoint-every", "20", "--keep-checkpoints", "2",
        "--log-every", "100", "--eval-episodes", "1", "--progress", "lines"]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tandem.cli", *cmd], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _checkpoint_steps(run: Path) -> int:
    try:
        return int(latest_checkpoint(run).name.split("_")[-1])
    except CheckpointError:
        return -1


@pytest.mark.slow
def test_twenty_sigkills_never_lose_more_than_the_checkpoint_interval(tmp_path):
    rng = random.Random(7)
    run = tmp_path / "run"
    cmd = ["train", "sac", "--out", str(run), "--steps", str(STEPS), *ARGS]
    kills = 0
    while kills < 20:
        before = _checkpoint_steps(run)
        proc = _start(cmd if kills == 0 else ["resume", str(run), "--progress", "lines"])
        # wait until this process has written a checkpoint of its own (it is training), then
        # kill it at a random moment up to ~0.4 s later: with a checkpoint every 20 steps,
        # many kills land while one is being written
        deadline = time.time() + 120
        while _checkpoint_steps(run) <= before and proc.poll() is None:
            assert time.time() < deadline, "no progress"
            time.sleep(0.02)
        if proc.poll() is not None:
            break  # finished before it could be killed
        time.sleep(rng.uniform(0.0, 0.4))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        ckpt = latest_checkpoint(run)  # always one, and it loads
        meta, _ = load_checkpoint(ckpt, expect_algo="sac")
        assert meta["step"] >= before
        load(run)
    assert kills == 20, f"the run finished after {kills} kills; make STEPS larger"
    done = subprocess.run([sys.executable, "-m", "tandem.cli", "resume", str(run)], env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f'"steps": {STEPS}' in done.stdout
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    assert all(len(r) == 3 for r in rows)
    seen = set()
    for step, name, _ in rows:
        assert (step, name) not in seen, f"duplicate row {step} {name}"
        seen.add((step, name))
    steps = sorted({int(r[0]) for r in rows if r[1] == "rollout/episodes"})
    assert steps == list(range(100, STEPS + 1, 100))  # no gap, no duplicate


def test_killed_before_the_first_checkpoint_resume_starts_over(tmp_path):
    run = tmp_path / "run"
    proc = _start(["train", "sac", "--out", str(run), "--steps", "300", *ARGS[:-4],
                   "--checkpoint-every", "0"])
    deadline = time.time() + 120
    while not (run / "config.json").exists():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(run.glob("checkpoints/step_*"))
    done = subprocess.run([sys.executable, "-m", "tandem.cli", "resume", str(run)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "starting it again from step 0" in done.stderr and '"steps": 300' in done.stdout


def test_a_kill_inside_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    # a child that writes checkpoint 1, then starts checkpoint 2 with a stall between its two
    # files, and is killed in that stall
    script = f"""
import time, numpy as np
from pathlib import Path
import tandem.run.checkpoint as c
root = Path({str(tmp_path / 'ck')!r})
c.save_checkpoint(root, algo="sac", step=1, arrays={{"state/w": np.ones(3)}}, meta={{}})
real = c._write_file
def slow(path, data):
    real(path, data)
    print("wrote", path.name, flush=True)
    time.sleep(60)
c._write_file = slow
c.save_checkpoint(root, algo="sac", step=2, arrays={{"state/w": np.zeros(3)}}, meta={{}})
"""
    proc = subprocess.Popen([sys.executable, "-c", script], env=ENV, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert "wrote arrays.safetensors" in proc.stdout.readline()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = latest_checkpoint(tmp_path, "ck")
    assert ckpt.name == "step_000000000001"
    _, arrays = load_checkpoint(ckpt)
    assert arrays["state/w"].tolist() == [1.0, 1.0, 1.0]
