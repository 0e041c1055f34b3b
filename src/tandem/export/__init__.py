"""Export a trained policy to ONNX so that it runs without tandem or JAX (issue 20).

The exported graph is ``Policy.act`` without Python around it: the observation normalisation,
the network, the deterministic action and the scaling to the env's action bounds. Contract
(docs/deploy.md): input 0 is ``obs`` ([N, *shape], float32 for a Box, uint8 for a uint8 image
Box, int64 for Discrete and MultiDiscrete, int8 for MultiBinary), or one input per leaf named
by its key path for Dict and Tuple observations; output 0 is ``action``, ready for
``env.step``: float32 within the Box's bounds, or int64 with Gymnasium's ``start`` added. The
model's metadata names the tandem version, algorithm, env id, both spaces (tandem's JSON) and
a hash of the run's config; :mod:`tandem.deploy` reads them back.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from tandem.core.spaces import Space, build, leaf_name, leaves
from tandem.errors import ExportError
from tandem.export.jaxpr_onnx import OPSET, require_onnx, to_onnx
from tandem.version import __version__

FORMATS = ("onnx",)


def _graph_dtype(leaf: Space) -> tuple[Any, Any]:
    """(dtype the policy function sees under JAX's default 32-bit mode, dtype of the graph's
    input) for an observation leaf."""
    if leaf.kind == "box":
        if np.dtype(leaf.dtype) == np.uint8:
            return np.uint8, np.uint8
        return np.float32, np.float32
    if leaf.kind in ("discrete", "multidiscrete"):
        return np.int32, np.int64
    return np.int8, np.int8  # multibinary


def _inputs(space: Space) -> list[tuple[str, tuple, Any, Any]]:
    out = []
    for path, leaf in leaves(space):
        name = "obs" if not path else "obs/" + leaf_name(path)
        out.append((name, tuple(leaf.shape), *_graph_dtype(leaf)))
    return out


def env_action_fn(action: Space):
    """Policy action -> env action inside the graph: the jnp twin of
    ``tandem.core.spaces.to_env_action`` (float32 where that one is float64)."""
    if action.kind == "box":
        low = np.asarray(action.low, np.float32).reshape(action.shape)
        high = np.asarray(action.high, np.float32).reshape(action.shape)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ExportError("ONNX export: the action Box has infinite bounds; the policy's "
                              "actions in [-1, 1] cannot be scaled to it")

        def box(a):
            a = jnp.clip(a.astype(jnp.float32), -1.0, 1.0)
            return jnp.clip(low + (a + 1.0) * 0.5 * (high - low), low, high)
        return box, np.float32
    if action.kind in ("discrete", "multidiscrete"):
        start = np.asarray(action.start if action.kind == "multidiscrete" else action.start[0],
                           np.int32)
        return (lambda a: a.astype(jnp.int32) + start), np.int64
    raise ExportError(f"ONNX export: {action.kind} actions are not supported")


def policy_model(policy, metadata: dict[str, str]):
    """The ONNX model of a :class:`tandem.run.results.Policy`."""
    require_onnx()
    spec = policy.spec
    inputs = _inputs(spec.obs)
    to_env, out_dtype = env_action_fn(spec.action)
    paths = [p for p, _ in leaves(spec.obs)]

    def fn(*xs):
        by_path = dict(zip(paths, xs))
        obs = xs[0] if spec.obs.is_leaf else build(spec.obs, lambda p, _: by_path[p])
        return (to_env(policy._act(policy.params, policy.obs_stats, obs)),)

    meta = {"tandem_version": __version__, "algo": policy.algo,
            "env_id": spec.env_id or "", "obs_space": json.dumps(spec.obs.to_json()),
            "action_space": json.dumps(spec.action.to_json()), "opset": str(OPSET),
            "inputs": json.dumps([name for name, *_ in inputs]), **metadata}
    return to_onnx(fn, inputs, [("action", out_dtype)], meta,
                   doc=f"tandem {__version__} {policy.algo} policy: obs -> env action")


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def write_model(model, out: Path) -> Path:
    """Serialise to a temp file beside ``out`` and rename it into place: an interrupted
    export leaves no half-written model."""
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"--out '{out}' is a folder; name the model file, e.g. "
                          f"{out / 'policy.onnx'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


__all__ = ["FORMATS", "policy_model", "write_model", "config_hash", "env_action_fn"]
