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


def test_tensorboard_shows_each_step_once_after_a_kill_and_resume(tmp_path):
    # checkpoint at 100, log lines every 50: killed after the line at 150 was written, the
    # resumed session (from 100) logs 150 again; TensorBoard's restart marker at 100 drops
    # the first session's 150
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run = tmp_path / "run"
    args = [a if a not in ("20", "100") else {"20": "100", "100": "50"}[a] for a in ARGS]
    proc = _start(["train", "sac", "--out", str(run), "--steps", "300", *args])
    deadline = time.time() + 120
    while not (run / "metrics.csv").is_file() or \
            "\n150,time/sps," not in (run / "metrics.csv").read_text():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _checkpoint_steps(run) == 100
    done = subprocess.run([sys.executable, "-m", "tandem.cli", "resume", str(run), "--progress",
                           "lines"], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("time/sps")] == [50, 100, 150, 200, 250, 300]


def test_a_crash_between_a_replay_segment_and_its_checkpoint_keeps_the_previous_one(
        tmp_path, monkeypatch):
    import numpy as np

    import tandem.run.checkpoint as c
    rows = np.arange(40).reshape(20, 2)
    store = lambda n: c.Segmented(n, 20, lambda a, b: {"x": rows[a:b]})  # noqa: E731
    writer = {"replay": c.SegmentWriter(tmp_path / "replay", "replay")}
    c.save_checkpoint(tmp_path / "checkpoints", algo="sac", step=1,
                      arrays={"state/w": np.ones(3)}, meta={}, stores={"replay": store(10)},
                      writers=writer)

    def crash(path, data):
        raise KeyboardInterrupt  # the process dies after the segment, before the checkpoint
    monkeypatch.setattr(c, "_write_file", crash)
    with pytest.raises(KeyboardInterrupt):
        c.save_checkpoint(tmp_path / "checkpoints", algo="sac", step=2,
                          arrays={"state/w": np.zeros(3)}, meta={},
                          stores={"replay": store(15)}, writers=writer)
    monkeypatch.undo()
    assert (tmp_path / "replay" / "seg_000000000010_000000000015.safetensors").is_file()
    ckpt = latest_checkpoint(tmp_path)
    meta, arrays = load_checkpoint(ckpt)
    assert ckpt.name.endswith("1") and arrays["replay/x"].tolist() == rows[:10].tolist()
    # a resumed session continues from the checkpoint's files; the orphan goes at its next save
    resumed = {"replay": c.SegmentWriter(tmp_path / "replay", "replay", meta["stores"]["replay"])}
    c.save_checkpoint(tmp_path / "checkpoints", algo="sac", step=3,
                      arrays={"state/w": np.zeros(3)}, meta={}, stores={"replay": store(18)},
                      writers=resumed)
    assert sorted(p.name for p in (tmp_path / "replay").iterdir()) == [
        "seg_000000000000_000000000010.safetensors", "seg_000000000010_000000000018.safetensors"]
    assert load_checkpoint(latest_checkpoint(tmp_path))[1]["replay/x"].tolist() == \
        rows[:18].tolist()
