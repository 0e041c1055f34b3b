import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tandem.core.pytree import flatten_pytree, restore_pytree
from tandem.core.replay import HostReplay
from tandem.core.spaces import Space
from tandem.errors import CheckpointError
from tandem.run.checkpoint import (FORMAT_VERSION, latest_checkpoint, load_checkpoint,
                                   save_checkpoint)

BOX2 = Space.box((2,))


def _fill(buf, n, start=0):
    for i in range(start, start + n):
        buf.add(np.full(2, i), np.full(1, -i), float(i), np.full(2, i + 1), float(i % 2))


def test_replay_ring_wraps_and_samples_shapes():
    buf = HostReplay(capacity=5, obs_space=BOX2, action_dim=1)
    _fill(buf, 7)  # 0..6 -> slots hold 5, 6, 2, 3, 4
    assert buf.size == 5 and buf.pos == 2
    np.testing.assert_array_equal(buf.data["reward"], [5, 6, 2, 3, 4])
    batch = buf.sample(np.random.default_rng(0), 3, 4)
    assert batch.obs.shape == (3, 4, 2) and batch.action.shape == (3, 4, 1)
    assert batch.reward.shape == (3, 4) and batch.terminated.shape == (3, 4)
    # every sampled transition is consistent with how it was written
    np.testing.assert_array_equal(batch.next_obs[..., 0], batch.obs[..., 0] + 1)
    assert set(batch.reward.ravel().tolist()) <= {2.0, 3.0, 4.0, 5.0, 6.0}


def test_replay_state_round_trip_samples_identically():
    buf = HostReplay(capacity=8, obs_space=BOX2, action_dim=1)
    _fill(buf, 6)
    clone = HostReplay(8, BOX2, 1)
    rows = {f"replay/{k}": v for k, v in buf.rows(0, buf.count).items()}
    clone.restore(rows, {"count": buf.count, "capacity": 8})
    a = buf.sample(np.random.default_rng(3), 2, 5)
    b = clone.sample(np.random.default_rng(3), 2, 5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    _fill(buf, 1, 100)
    _fill(clone, 1, 100)
    np.testing.assert_array_equal(buf.data["obs"], clone.data["obs"])


TREE = {"params": {"dense": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.zeros(3)}},
        "count": jnp.array(7, jnp.int32), "key": jax.random.PRNGKey(1)}


def _save(root, step=10, algo="sac", keep=3):
    arrays = flatten_pytree(TREE, "state")
    arrays["replay/obs"] = np.ones((4, 2), np.float32)
    return save_checkpoint(root, algo=algo, step=step, arrays=arrays, meta={"host": {"x": 1}},
                           keep=keep)


def test_checkpoint_round_trip_and_scalars(tmp_path):
    ckpt = _save(tmp_path / "checkpoints")
    assert latest_checkpoint(tmp_path) == ckpt
    meta, arrays = load_checkpoint(ckpt, expect_algo="sac")
    assert meta["step"] == 10 and meta["host"] == {"x": 1}
    assert meta["format_version"] == FORMAT_VERSION
    tree = restore_pytree(jax.eval_shape(lambda: TREE), arrays, "state", "t")
    assert tree["count"].shape == () and int(tree["count"]) == 7
    np.testing.assert_array_equal(tree["params"]["dense"]["kernel"], TREE["params"]["dense"]["kernel"])
    # no temporary folders remain and nothing pickled is written
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")] == []
    assert sorted(p.name for p in ckpt.iterdir()) == ["arrays.safetensors", "meta.json"]


def test_checkpoint_keeps_last_k_and_latest_pointer(tmp_path):
    for step in (10, 20, 30, 40):
        _save(tmp_path / "checkpoints", step=step, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert names == ["step_000000000030", "step_000000000040"]
    assert latest_checkpoint(tmp_path).name == "step_000000000040"


def test_latest_falls_back_when_pointer_is_stale(tmp_path):
    _save(tmp_path / "checkpoints", step=10)
    (tmp_path / "checkpoints" / "LATEST").write_text("step_000000000099\n")
    assert latest_checkpoint(tmp_path).name == "step_000000000010"


@pytest.mark.parametrize("damage, message", [
    ("bitflip", "checksum mismatch"),
    ("truncate", "checksum mismatch"),
    ("meta_garbage", "not valid JSON"),
    ("foreign", "not a tandem checkpoint"),
    ("version", "format version"),
    ("missing", "missing"),
])
def test_corrupt_checkpoints_give_clear_errors(tmp_path, damage, message):
    ckpt = _save(tmp_path / "checkpoints")
    arrays_file, meta_file = ckpt / "arrays.safetensors", ckpt / "meta.json"
    if damage == "bitflip":
        blob = bytearray(arrays_file.read_bytes())
        blob[len(blob) // 2] ^= 0x10
        arrays_file.write_bytes(bytes(blob))
    elif damage == "truncate":
        arrays_file.write_bytes(arrays_file.read_bytes()[:-9])
    elif damage == "meta_garbage":
        meta_file.write_bytes(b"\x00\xff{not json")
    elif damage == "foreign":
        meta_file.write_text(json.dumps({"format": "something-else"}))
    elif damage == "version":
        meta = json.loads(meta_file.read_text())
        meta["format_version"] = 999
        meta_file.write_text(json.dumps(meta))
    elif damage == "missing":
        os.remove(arrays_file)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(ckpt)
    assert str(ckpt) in str(info.value)


def test_checkpoint_from_another_algorithm_is_refused(tmp_path):
    ckpt = _save(tmp_path / "checkpoints", algo="td3")
    with pytest.raises(CheckpointError, match="'td3' checkpoint, not 'sac'"):
        load_checkpoint(ckpt, expect_algo="sac")


def test_restore_rejects_mismatched_shapes(tmp_path):
    ckpt = _save(tmp_path / "checkpoints")
    _, arrays = load_checkpoint(ckpt)
    other = {**TREE, "params": {"dense": {"kernel": jnp.zeros((2, 4)), "bias": jnp.zeros(3)}}}
    with pytest.raises(CheckpointError, match="shape"):
        restore_pytree(other, arrays, "state", "t")
    with pytest.raises(CheckpointError, match="missing"):
        restore_pytree({**TREE, "extra": jnp.zeros(1)}, arrays, "state", "t")


def test_no_checkpoint_in_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        latest_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        latest_checkpoint(tmp_path / "nope")
