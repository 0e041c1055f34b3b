"""The one session drives any Driver: a NumPy-only fake driver (tests/fake_driver.py, no JAX,
no Gymnasium) trains, logs, evaluates, keeps the best checkpoint, writes replay segments,
resumes bit-exactly and stops on Ctrl-C, all through ``tandem.run.session``.

The scenario runs in a fresh interpreter, which also shows that the run layer needs neither
JAX nor Gymnasium.
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _scenario(out: Path) -> dict:
    from tandem.config import Settings
    from tandem.errors import TrainingInterrupted
    from tandem.run import folder as rf
    from tandem.run.checkpoint import latest_checkpoint, load_checkpoint
    from tandem.run.session import Session
    from tests.fake_driver import FakeDriver

    settings = Settings(log_every=10, eval_every=20, eval_episodes=2, checkpoint_every=25,
                        keep_checkpoints=2)

    def new(name: str, steps: int, interrupt_at=None):
        run_dir = rf.claim(out / name)
        record = {"algo": "fake", "env": "fake", "seed": 3, "steps": steps, "config": {},
                  "env_spec": {}}
        rf.write_run(run_dir, record)
        driver = FakeDriver(3, interrupt_at=interrupt_at)
        driver.start()
        return Session(run_dir, record, driver, settings, steps, progress=False).run()

    def resume(name: str, steps=None):
        run_dir = out / name
        record = rf.read_run(run_dir)
        meta, arrays = load_checkpoint(latest_checkpoint(run_dir))
        driver = FakeDriver(3)
        driver.restore(meta, arrays, "x")
        until = rf.resume_target(run_dir, record, driver.step, steps)
        return Session(run_dir, record, driver, settings, until, progress=False,
                       resume_step=driver.step, restored_meta=meta).run()

    full = new("full", 100)
    new("half", 60)
    resume("half", 40)
    try:
        new("ctrl_c", 100, interrupt_at=37)
        raise AssertionError("Ctrl-C did not stop the run")
    except TrainingInterrupted as exc:
        interrupted = str(exc)
    stopped_at = int(latest_checkpoint(out / "ctrl_c").name.split("_")[-1])
    resume("ctrl_c")  # finishes the total first asked for
    return {"full_summary": full[0][0], "interrupted": interrupted, "stopped_at": stopped_at,
            "modules": sorted(m for m in ("jax", "flax", "optax", "gymnasium", "torch")
                              if m in sys.modules)}


def _rows(run_dir: Path) -> list[tuple[int, str, float]]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return [(int(r["step"]), r["name"], float(r["value"])) for r in csv.DictReader(fh)]


def _final_arrays(run_dir: Path) -> dict:
    from tandem.run.checkpoint import latest_checkpoint, load_checkpoint
    return load_checkpoint(latest_checkpoint(run_dir))[1]


def test_fake_numpy_driver_through_the_one_session(tmp_path):
    proc = subprocess.run([sys.executable, __file__, str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["modules"] == []  # the session and run folder need neither JAX nor Gymnasium
    summary = out["full_summary"]
    assert summary["steps"] == 100 and summary["step_unit"] == "env_steps"
    assert summary["eval/episodes"] == 2 and summary["time/sps"] > 0
    assert summary["best"]["step"] in (20, 40, 60, 80, 100)
    # log lines at every 10 steps, evaluations at every 20, each step once
    rows = _rows(tmp_path / "full")
    assert sorted({s for s, n, _ in rows if n == "train/w"}) == list(range(10, 101, 10))
    assert [s for s, n, _ in rows if n == "eval/return_mean"] == [20, 40, 60, 80, 100]
    # exact resume: 60 + 40 and the Ctrl-C'd run equal the straight 100, arrays and rows
    full = _final_arrays(tmp_path / "full")
    for name in ("half", "ctrl_c"):
        other = _final_arrays(tmp_path / name)
        assert full.keys() == other.keys()
        for k in full:
            np.testing.assert_array_equal(full[k], other[k], err_msg=f"{name}: {k}")
        a = [(s, n, v) for s, n, v in _rows(tmp_path / "full") if not n.startswith("time/")]
        b = [(s, n, v) for s, n, v in _rows(tmp_path / name) if not n.startswith("time/")]
        assert a == b, name
    assert out["stopped_at"] == 37 and "interrupted at step 37" in out["interrupted"]
    # the replay buffer (capacity 64) went to segments: only the rows still in the ring
    assert (tmp_path / "full" / "replay").is_dir()
    assert json.loads((tmp_path / "ctrl_c" / "summary.json").read_text())["steps"] == 100


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps(_scenario(Path(sys.argv[1]))))
