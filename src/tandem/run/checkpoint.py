"""Checkpoint files: safe (no pickle), versioned, atomic, and replay written once.

A checkpoint is a folder ``checkpoints/step_<N>/`` with
- ``arrays.safetensors``: every array of the driver's state (the algorithm state under
  ``state/``, host state under its own prefixes), flat names from pytree key paths;
- ``meta.json``: format name and version, algorithm, step, the driver's metadata (JSON only)
  and the SHA-256 of the arrays file, so truncation and bit flips are detected.

It is written to a temporary folder and renamed into place (atomic on POSIX), then the
``checkpoints/LATEST`` pointer is replaced atomically. A crash at any moment leaves the
previous checkpoint intact and LATEST pointing at a complete one.

Replay buffers are not rewritten by every checkpoint. A driver hands a buffer as a
:class:`Segmented` store (rows numbered by a running count, kept in a ring of ``capacity``);
each checkpoint writes only the rows added since the previous one, as one file
``<run>/<store>/seg_<first>_<end>.safetensors`` (written atomically before the checkpoint that
names it), and its meta lists the files (with their SHA-256) that hold the rows still in the
ring. Bytes written per checkpoint are therefore the new rows plus the algorithm state, not
the whole buffer. A segment file is deleted only when no kept checkpoint names it. Loading a
checkpoint gives the rows in order of their count (``<store>/<field>``, oldest first) and
``meta["stores"][store]`` with ``count`` and ``capacity``.

This module imports NumPy and safetensors only (no JAX): the run layer writes and reads
every checkpoint here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from tandem.errors import CheckpointError

# what reading a well-formed file with wrong contents (a field of the wrong type, a value out
# of range, a missing key) raises while restoring; the restorers turn these into one
# CheckpointError naming the file
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)


def counters(host_meta: dict, *names: str) -> tuple[int, ...]:
    """The named counters of a checkpoint's host meta (seed, step, episode, ...) as ints,
    each an integral number >= 0; a ValueError or TypeError (in MALFORMED) otherwise, so a
    forged ``episode: -1`` is refused at restore instead of failing in an env reset later."""
    out = []
    for name in names:
        value = host_meta[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or value != int(value) or value < 0:
            raise ValueError(f"{name} = {value!r} is not a count")
        out.append(int(value))
    return tuple(out)


FORMAT = "tandem-checkpoint"
FORMAT_VERSION = 1
ARRAYS = "arrays.safetensors"
META = "meta.json"
_SEGMENT = re.compile(r"seg_(\d{12})_(\d{12})\.safetensors")


@dataclasses.dataclass
class Segmented:
    """A ring buffer as a checkpoint store: ``count`` rows added so far (row g lives at ring
    position g % capacity); ``read(a, b)`` returns the fields of rows a..b-1 (each
    ``count - capacity <= a``), stacked along ``axis`` (0 for one buffer, 1 for vmapped
    seeds [S, rows, ...])."""

    count: int
    capacity: int
    read: Callable[[int, int], dict[str, np.ndarray]]
    axis: int = 0


@dataclasses.dataclass
class Snapshot:
    """What a driver hands the session for one checkpoint."""

    arrays: dict[str, np.ndarray]
    meta: dict
    stores: dict[str, Segmented] = dataclasses.field(default_factory=dict)


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
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file via temp file + rename: a reader finds the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _blob(arrays: dict[str, np.ndarray]) -> bytes:
    return st_save({k: np.require(v, requirements="C") for k, v in arrays.items()})


class SegmentWriter:
    """The segment files of one store: which rows they hold, and writing the new ones.

    ``files`` are the segments the newest checkpoint names (from the restored checkpoint's
    meta on resume), so the next checkpoint writes only rows past the last of them."""

    def __init__(self, folder: Path, name: str, previous: dict | None = None) -> None:
        self.folder, self.name = Path(folder), name
        self.files: list[dict] = list((previous or {}).get("files", []))

    def save(self, store: Segmented) -> dict:
        """Write the rows not yet in a file; return this store's meta for the checkpoint."""
        lo = max(0, store.count - store.capacity)
        keep = [f for f in self.files if lo < _span(f["name"])[1] <= store.count]
        start = _span(keep[-1]["name"])[1] if keep else lo
        if store.count > start:
            self.folder.mkdir(parents=True, exist_ok=True)
            data = _blob(store.read(start, store.count))
            name = f"seg_{start:012d}_{store.count:012d}.safetensors"
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.folder / name)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _fsync_dir(self.folder)
            keep.append({"name": name, "sha256": hashlib.sha256(data).hexdigest()})
        self.files = keep
        return {"count": store.count, "capacity": store.capacity, "axis": store.axis,
                "files": keep}


def _span(name: str) -> tuple[int, int]:
    """(first row, end row) of a segment file's name; ValueError for another name."""
    m = _SEGMENT.fullmatch(name)
    if m is None:
        raise ValueError(f"bad segment name {name!r}")
    return int(m.group(1)), int(m.group(2))


def save_checkpoint(ckpt_root: Path, *, algo: str, step: int, arrays: dict[str, np.ndarray],
                    meta: dict, keep: int = 3, stores: dict[str, Segmented] | None = None,
                    writers: dict[str, SegmentWriter] | None = None) -> Path:
    """Write checkpoint ``step`` under ``ckpt_root`` and point LATEST at it. ``stores`` are
    written as segments by ``writers`` (one per store; made here if not given) into the run
    folder (``ckpt_root``'s parent). Returns the checkpoint folder."""
    ckpt_root = Path(ckpt_root)
    ckpt_root.mkdir(parents=True, exist_ok=True)
    store_meta = {}
    for name, store in (stores or {}).items():
        writer = (writers or {}).get(name) or SegmentWriter(ckpt_root.parent / name, name)
        store_meta[name] = writer.save(store)
    final = ckpt_root / f"step_{step:012d}"
    tmp = Path(tempfile.mkdtemp(dir=ckpt_root, prefix=f".tmp_step_{step:012d}_"))
    try:
        blob = _blob(arrays)
        _write_file(tmp / ARRAYS, blob)
        full_meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "algo": algo,
                     "step": int(step), "arrays_sha256": hashlib.sha256(blob).hexdigest(),
                     **meta}
        if store_meta:
            full_meta["stores"] = store_meta
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
    if stores:
        _prune_segments(ckpt_root, list(stores))
    return final


def _prune_segments(ckpt_root: Path, names: list[str]) -> None:
    """Delete segment files that no kept checkpoint names (when every kept checkpoint's meta
    is readable; otherwise keep them all)."""
    used: dict[str, set] = {n: set() for n in names}
    for ckpt in ckpt_root.glob("step_*"):
        try:
            meta = json.loads((ckpt / META).read_text())
            for n in names:
                used[n].update(f["name"] for f in meta.get("stores", {}).get(n, {}).get(
                    "files", []))
        except (OSError, ValueError, TypeError, AttributeError, KeyError):
            return
    for n in names:
        folder = ckpt_root.parent / n
        for path in folder.glob("*seg_*.safetensors*"):
            if path.name not in used[n]:
                path.unlink(missing_ok=True)


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
    """(meta, arrays) of a checkpoint folder, verified; CheckpointError on any problem.
    Segmented stores come back as ``<store>/<field>`` rows, oldest first."""
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
    arrays = _safe_load(blob, arrays_path)
    stores = meta.get("stores", {})
    try:
        if not isinstance(stores, dict):
            raise TypeError("'stores' is not an object")
        for name, store in stores.items():
            arrays.update(_read_store(ckpt.parent.parent, name, store, ckpt))
    except MALFORMED as exc:
        raise CheckpointError(f"'{meta_path}' names replay segments that are missing or "
                              f"malformed ({exc!r})") from None
    return meta, arrays


def _safe_load(blob: bytes, path: Path) -> dict[str, np.ndarray]:
    try:
        return st_load(blob)
    except Exception as exc:  # safetensors raises its own error types on a bad header
        raise CheckpointError(f"'{path}' is corrupt ({exc})") from None


def _read_store(run_dir: Path, name: str, store: dict, ckpt: Path) -> dict[str, np.ndarray]:
    """The rows [max(0, count - capacity), count) of a segmented store, oldest first."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"bad store name {name!r}")
    count, capacity, axis = store["count"], store["capacity"], store["axis"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
               for v in (count, capacity, axis)) or capacity < 1 or axis > 1:
        raise ValueError(f"store {name}: count {count!r}, capacity {capacity!r}, axis {axis!r}")
    lo = max(0, count - capacity)
    parts: list[dict[str, np.ndarray]] = []
    expect = lo
    for f in store["files"]:
        start, end = _span(f["name"])
        path = run_dir / name / f["name"]
        if not path.is_file():
            raise CheckpointError(f"'{ckpt}': replay segment '{path}' is missing; resume from an "
                                  "older checkpoint")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != f["sha256"]:
            raise CheckpointError(f"'{ckpt}': replay segment '{path}' is corrupt (checksum "
                                  "mismatch); resume from an older checkpoint")
        rows = _safe_load(data, path)
        if start > expect or end <= expect or end > count:
            raise ValueError(f"segments do not cover rows {expect}..{count}: {f['name']}")
        cut = expect - start
        parts.append({k: np.take(v, range(cut, end - start), axis=axis)
                      for k, v in rows.items()})
        expect = end
    if expect != count:
        raise ValueError(f"segments end at row {expect}, the store holds {count}")
    if not parts:
        return {}
    keys = set(parts[0])
    if any(set(p) != keys for p in parts):
        raise ValueError("segments hold different fields")
    return {f"{name}/{k}": np.concatenate([p[k] for p in parts], axis=axis) for k in keys}


def store_meta(meta: dict, name: str) -> dict | None:
    """``meta["stores"][name]`` of a loaded checkpoint, or None (a checkpoint written before
    stores, with the buffer inline in its arrays)."""
    stores = meta.get("stores")
    return stores.get(name) if isinstance(stores, dict) else None
