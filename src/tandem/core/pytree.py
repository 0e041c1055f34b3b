"""Pytrees <-> flat named arrays: how a JAX state becomes checkpoint arrays and back."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from tandem.errors import CheckpointError


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
