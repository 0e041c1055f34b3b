"""Checkpoints: safe (no pickle), versioned, atomic.

A checkpoint is a folder ``checkpoints/step_<N>/`` with
- ``arrays.safetensors``: every array (the algorithm state pytree under ``state/``, host
  state such as the replay buffer under its own prefixes), flat names from pytree key paths;
- ``meta.json``: format name and version, algorithm, step, config, host metadata (JSON only)
  and the SHA-256 of the arrays file, so truncation and bit flips are detected.

It is written to a temporary folder and renamed into place (atomic on POSIX), then the
``checkpoints/LATEST`` pointer is replaced atomically. A crash at any moment leaves the
previous checkpoint intact and LATEST pointing at a complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from tandem.errors import CheckpointError

# what reading a well-formed file with wrong contents (a field of the wrong type, a value out
# of range, a missing key) raises while restoring; the restorers turn these into one
# CheckpointError naming the file
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)

FORMAT = "tandem-checkpoint"
FORMAT_VERSION = 1
ARRAYS = "arrays.safetensors"
META = "meta.json"


# ---------------------------------------------------------------- pytree <-> flat names
def _key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def flatten_pytree(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    """{'prefix/a/b/kernel': array} for every leaf of ``tree``."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    out = {}
    for path, leaf in leaves:
        name = "/".join([prefix] + [_key_name(k) for k in path])
        out[name] = np.asarray(leaf)
    return out


def restore_pytree(template: Any, arrays: dict[str, np.ndarray], prefix: str, source: str) -> Any:
    """Fill ``template``'s structure with arrays by name, checking shapes and dtypes."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    filled = []
    for path, leaf in leaves:
        name = "/".join([prefix] + [_key_name(k) for k in path])
        if name not in arrays:
            raise CheckpointError(f"{source}: array '{name}' is missing — the checkpoint was "
                                  "written by a different algorithm or network configuration")
        value = arrays[name]
        shape, dtype = tuple(np.shape(leaf)), np.dtype(leaf.dtype)  # arrays or ShapeDtypeStructs
        if value.shape != shape or value.dtype != dtype:
            raise CheckpointError(f"{source}: array '{name}' has shape {value.shape} "
                                  f"{value.dtype}, expected {shape} {dtype} — the config "
                                  "does not match the one this checkpoint was trained with")
        filled.append(jax.numpy.asarray(value))
    return jax.tree_util.tree_unflatten(treedef, filled)


# ---------------------------------------------------------------- writing
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file via temp file + rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(ckpt_root: Path, *, algo: str, step: int, arrays: dict[str, np.ndarray],
                    meta: dict, keep: int = 3) -> Path:
    """Write checkpoint ``step`` under ``ckpt_root`` and point LATEST at it."""
    ckpt_root = Path(ckpt_root)
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step:012d}"
    tmp = Path(tempfile.mkdtemp(dir=ckpt_root, prefix=f".tmp_step_{step:012d}_"))
    try:
        blob = st_save({k: np.require(v, requirements="C") for k, v in arrays.items()})
        _write_file(tmp / ARRAYS, blob)
        full_meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "algo": algo,
                     "step": int(step), "arrays_sha256": hashlib.sha256(blob).hexdigest(),
                     **meta}
        _write_file(tmp / META, json.dumps(full_meta, indent=1, sort_keys=True).encode())
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step (e.g. after a resume): replace it
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(ckpt_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(ckpt_root / "LATEST", final.name + "\n")
    for old in sorted(ckpt_root.glob("step_*"))[:-keep]:  # zero-padded names sort by step
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


# ---------------------------------------------------------------- reading
def latest_checkpoint(run_dir: Path, folder: str = "checkpoints") -> Path:
    """Path of the newest complete checkpoint of a run folder (LATEST, or the highest step);
    ``folder="best"`` gives the best-evaluated one kept with ``eval_every``."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"run folder '{run_dir}' does not exist")
    root = run_dir / folder
    candidates = sorted(root.glob("step_*")) if root.is_dir() else []
    pointer = root / "LATEST"
    if pointer.is_file():
        name = pointer.read_text().strip()
        if (root / name / META).is_file():
            return root / name
    complete = [c for c in candidates if (c / META).is_file() and (c / ARRAYS).is_file()]
    if not complete:
        if folder == "best":
            raise CheckpointError(f"'{run_dir}' has no best checkpoint: it is kept when training "
                                  "runs with eval_every > 0 (and keep_best)")
        raise CheckpointError(f"no checkpoint found in '{run_dir}' (expected "
                              f"{root}/step_*/{META}); was training started with --out there?")
    return complete[-1]


def load_checkpoint(ckpt: Path, expect_algo: str | None = None
                    ) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a checkpoint folder, verified; CheckpointError on any problem."""
    ckpt = Path(ckpt)
    meta_path, arrays_path = ckpt / META, ckpt / ARRAYS
    if not meta_path.is_file() or not arrays_path.is_file():
        raise CheckpointError(f"'{ckpt}' is not a tandem checkpoint (missing {META} or {ARRAYS})")
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"'{meta_path}' is corrupt (not valid JSON: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"'{meta_path}' is not a tandem checkpoint (format "
                              f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"'{ckpt}' has checkpoint format version {version!r}; this tandem "
                              f"reads version {FORMAT_VERSION} — use the tandem version that "
                              "wrote it")
    if not isinstance(meta.get("host", {}), dict):
        raise CheckpointError(f"'{meta_path}' is corrupt ('host' is not an object)")
    if expect_algo is not None and meta.get("algo") != expect_algo:
        raise CheckpointError(f"'{ckpt}' is a {meta.get('algo')!r} checkpoint, not "
                              f"{expect_algo!r}; load it with the algorithm that wrote it")
    blob = arrays_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta.get("arrays_sha256"):
        raise CheckpointError(f"'{arrays_path}' is corrupt (checksum mismatch: truncated or "
                              "modified after it was written); resume from an older checkpoint")
    try:
        arrays = st_load(blob)
    except Exception as exc:  # safetensors raises its own error types on a bad header
        raise CheckpointError(f"'{arrays_path}' is corrupt ({exc})") from None
    return meta, arrays
