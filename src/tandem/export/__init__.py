"""Export a trained policy to ONNX so that it runs without tandem or JAX (issue 20).

The exported graph is ``Policy.act`` without Python around it: the observation normalisation,
the network, the deterministic action and the scaling to the env's action bounds. Contract
(docs/deploy.md): input 0 is ``obs`` ([N, *shape], float32 for a Box, uint8 for a uint8 image
Box, int64 for Discrete and MultiDiscrete, int8 for MultiBinary), or one input per leaf named
by its key path for Dict and Tuple observations; output 0 is ``action``, ready for
``env.step``: float32 within the Box's bounds, or int64 with Gymnasium's ``start`` added. The
model's metadata names the tandem version, algorithm, env id, both spaces (tandem's JSON) and
a hash of the run's config; :mod:`tandem.deploy` reads them back.

``npz``: the same graph as plain data, for a runtime without ONNX: ``policy.npz`` holds the
weights and constants (by name) and ``policy.json`` the nodes in order (ONNX operator names
and attributes, dtypes spelled as NumPy's), the inputs, outputs and metadata. The NumPy
forward pass in docs/deploy.md runs it (tested against the ONNX model).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from tandem.core.spaces import Space, build, leaf_name, leaves
from tandem.errors import ExportError
from tandem.export.jaxpr_onnx import OPSET, helper, numpy_helper, require_onnx, to_onnx
from tandem.run.checkpoint import atomic_write_bytes
from tandem.version import __version__

FORMATS = ("onnx", "npz")
NPZ_FORMAT = "tandem-npz-1"


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


def npz_graph(model) -> tuple[dict, dict[str, np.ndarray]]:
    """(the JSON description, the arrays) of an ONNX model made by :func:`policy_model`."""
    def dtype_name(t: int) -> str:
        return np.dtype(helper.tensor_dtype_to_np_dtype(t)).name

    def attr(a):
        v = helper.get_attribute_value(a)
        if a.name == "to":  # Cast's target: an ONNX type enum -> NumPy's name
            return dtype_name(v)
        if isinstance(v, bytes):
            return v.decode()
        return list(v) if isinstance(v, (list, tuple)) else v

    def value(info):
        t = info.type.tensor_type
        return {"name": info.name, "dtype": dtype_name(t.elem_type),
                "shape": [d.dim_param or d.dim_value for d in t.shape.dim]}

    g = model.graph
    arrays = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    desc = {"format": NPZ_FORMAT, "opset": model.opset_import[0].version,
            "inputs": [value(i) for i in g.input], "outputs": [value(o) for o in g.output],
            "nodes": [{"op": n.op_type, "in": list(n.input), "out": list(n.output),
                       "attrs": {a.name: attr(a) for a in n.attribute}} for n in g.node],
            "metadata": {p.key: p.value for p in model.metadata_props}}
    return desc, arrays


def write_npz(model, out: Path) -> Path:
    """``out`` (.npz, the arrays) and the same stem's .json (the graph), each written to a
    temp file and renamed, the JSON last: a reader never finds a JSON without its arrays."""
    out = Path(out)
    if out.suffix != ".npz":
        raise ExportError(f"--format npz writes a .npz and a .json beside it: name the .npz "
                          f"file (--out {out.with_suffix('.npz')})")
    desc, arrays = npz_graph(model)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _atomic_bytes(buf.getvalue(), out)
    _atomic_bytes(json.dumps(desc, indent=1).encode(), out.with_suffix(".json"))
    return out


def write_model(model, out: Path) -> Path:
    """Serialise to a temp file beside ``out`` and rename it into place: an interrupted
    export leaves no half-written model."""
    _atomic_bytes(model.SerializeToString(), Path(out))
    return out


def _atomic_bytes(data: bytes, out: Path) -> None:
    if out.is_dir():
        raise ExportError(f"--out '{out}' is a folder; name the model file, e.g. "
                          f"{out / 'policy.onnx'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, data)


__all__ = ["FORMATS", "policy_model", "write_model", "write_npz", "npz_graph", "config_hash",
           "env_action_fn"]
