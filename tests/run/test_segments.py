"""Replay in append-only segments (issue 14): a checkpoint writes only the rows added since the
previous one, stays correct after the ring wraps and when old checkpoints are pruned, and
survives a kill in the middle of a write."""

import json
from pathlib import Path

import numpy as np
import pytest

from tandem import resume, train
from tandem.errors import CheckpointError
from tandem.run.checkpoint import (SegmentWriter, Segmented, latest_checkpoint, load_checkpoint,
                                   save_checkpoint)
from tests.conftest import TINY


def _ring(capacity: int):
    """A ring buffer of row numbers: row g holds g at position g % capacity."""
    data = np.zeros((capacity, 2), np.int64)
    state = {"count": 0}

    def add(n):
        for _ in range(n):
            g = state["count"]
            data[g % capacity] = (g, -g)
            state["count"] += 1

    def store():
        return Segmented(state["count"], capacity,
                         lambda a, b: {"rows": data[np.arange(a, b) % capacity]})
    return add, store


def _save(root: Path, step: int, store: Segmented, writers: dict, keep: int = 2) -> Path:
    return save_checkpoint(root / "checkpoints", algo="x", step=step,
                           arrays={"state/w": np.zeros(3)}, meta={"host": {}}, keep=keep,
                           stores={"replay": store}, writers=writers)


def test_rows_survive_the_ring_wrapping_and_pruning(tmp_path):
    add, store = _ring(capacity=10)
    writers = {"replay": SegmentWriter(tmp_path / "replay", "replay")}
    for step in range(1, 8):  # 4 rows per checkpoint: the ring wraps after the third
        add(4)
        ckpt = _save(tmp_path, step, store(), writers)
        _, arrays = load_checkpoint(ckpt)
        count = 4 * step
        np.testing.assert_array_equal(arrays["replay/rows"][:, 0],
                                      np.arange(max(0, count - 10), count))
    # the two kept checkpoints (rows 14..23 and 18..27) need rows 14..27: files before that go
    files = sorted(p.name for p in (tmp_path / "replay").iterdir())
    needed = set()
    for c in (tmp_path / "checkpoints").glob("step_*"):
        needed |= {f["name"] for f in json.loads((c / "meta.json").read_text())["stores"][
            "replay"]["files"]}
    assert set(files) == needed
    assert all(int(f.split("_")[2].split(".")[0]) > 14 for f in files)  # ends past row 14


def test_a_resumed_writer_continues_after_the_restored_files(tmp_path):
    add, store = _ring(capacity=100)
    add(30)
    ckpt = _save(tmp_path, 1, store(), {"replay": SegmentWriter(tmp_path / "replay", "replay")})
    meta, _ = load_checkpoint(ckpt)
    # a new session (a resume) starts its writer from the checkpoint's list of files
    writer = SegmentWriter(tmp_path / "replay", "replay", meta["stores"]["replay"])
    add(5)
    ckpt = _save(tmp_path, 2, store(), {"replay": writer})
    meta, arrays = load_checkpoint(ckpt)
    assert [f["name"] for f in meta["stores"]["replay"]["files"]] == \
        ["seg_000000000000_000000000030.safetensors", "seg_000000000030_000000000035.safetensors"]
    np.testing.assert_array_equal(arrays["replay/rows"][:, 0], np.arange(35))


def test_a_missing_segment_names_the_checkpoint(tmp_path):
    add, store = _ring(capacity=100)
    add(7)
    ckpt = _save(tmp_path, 1, store(), {"replay": SegmentWriter(tmp_path / "replay", "replay")})
    for f in (tmp_path / "replay").iterdir():
        f.unlink()
    with pytest.raises(CheckpointError, match="step_000000000001.*missing"):
        load_checkpoint(ckpt)


def test_bytes_written_per_checkpoint_stay_flat(tmp_path):
    """Ten checkpoints of a SAC run: each writes its own arrays (the algorithm state) and
    the rows added since the previous one, not the whole buffer. Its meta.json names the
    segments it uses (about 100 bytes each), the only part that grows."""
    cfg = TINY.replace(checkpoint_every=100, keep_checkpoints=20, buffer_size=5_000)
    train(cfg, "Pendulum-v1", steps=1000, out=tmp_path / "r", progress=False, check_env=False)
    run = tmp_path / "r"
    sizes, metas = [], []
    for ckpt in sorted((run / "checkpoints").glob("step_*")):
        step = int(ckpt.name.split("_")[1])
        new = [f for f in json.loads((ckpt / "meta.json").read_text())["stores"]["replay"][
            "files"] if f["name"].endswith(f"_{step:012d}.safetensors")]
        assert len(new) == 1
        sizes.append((ckpt / "arrays.safetensors").stat().st_size +
                     (run / "replay" / new[0]["name"]).stat().st_size)
        metas.append((ckpt / "meta.json").stat().st_size)
    assert len(sizes) == 10
    # flat while the buffer grows 10x; they differ only by the running episode's actions
    # (the env fast-forward on resume: up to 200 float64 actions of a Pendulum episode)
    assert max(sizes) - min(sizes) <= 200 * 8, sizes
    assert metas[-1] - metas[0] < 9 * 150 + 600, metas  # segment names and recent returns
    _, arrays = load_checkpoint(latest_checkpoint(run))
    assert arrays["replay/obs"].shape == (1000, 3)  # and the latest has every row


def test_a_run_resumes_from_segments_after_the_ring_wrapped(tmp_path):
    # 300 steps into a 128-row buffer: the checkpoint at 200 holds rows 72..199 only
    cfg = TINY.replace(buffer_size=128, batch_size=16, checkpoint_every=100)
    full = train(cfg, "Pendulum-v1", steps=300, seed=1, out=tmp_path / "full",
                 progress=False, check_env=False)
    train(cfg, "Pendulum-v1", steps=200, seed=1, out=tmp_path / "half", progress=False,
          check_env=False)
    resumed = resume(tmp_path / "half", steps=100, progress=False)
    a = load_checkpoint(latest_checkpoint(tmp_path / "full"))[1]
    b = load_checkpoint(latest_checkpoint(tmp_path / "half"))[1]
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert full.summary["eval/return_mean"] == resumed.summary["eval/return_mean"]
