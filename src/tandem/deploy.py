"""Run an exported policy with onnxruntime and NumPy only (issue 20): no JAX, no Gymnasium.

    from tandem.deploy import OnnxPolicy
    policy = OnnxPolicy("policy.onnx")
    action = policy.act(obs)          # one observation, or a batch [N, ...]

``tandem export RUN --out policy.onnx`` writes the model (docs/deploy.md). The graph holds
the whole policy (normalisation, network, deterministic action, scaling to the action bounds),
so ``act`` only shapes the input: one observation gets a batch axis and loses it again, each
leaf is cast to the dtype the graph takes, and a Dict observation is fed leaf by leaf.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tandem.core.spaces import Space, batch_size, get_leaf, leaves
from tandem.errors import CheckpointError, ExportError

try:  # the [export] extra
    import onnxruntime as ort
except ImportError:  # pragma: no cover - exercised by the missing-extra test
    ort = None

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
               "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


class OnnxPolicy:
    """A policy exported by ``tandem export``: ``act(obs)`` -> the env's action.

    ``threads``: onnxruntime's intra-op threads (1: one core, the lowest latency for one
    action, and no contention with a control loop beside it)."""

    def __init__(self, path: str | Path, threads: int = 1):
        if ort is None:
            raise ExportError("tandem.deploy needs onnxruntime: pip install 'tandem-rl[export]' "
                              "(or just onnxruntime)")
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"no exported policy at '{path}'")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=["CPUExecutionProvider"])
            meta = self.session.get_modelmeta().custom_metadata_map
            self.obs_space = Space.from_json(json.loads(meta["obs_space"]))
            self.action_space = Space.from_json(json.loads(meta["action_space"]))
        except Exception as exc:  # noqa: BLE001 - any unreadable model is one error
            raise CheckpointError(f"'{path}' is not a policy exported by tandem "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
                                  ) from None
        self.metadata = dict(meta)
        self._inputs = [(i.name, _ORT_DTYPES.get(i.type, np.float32))
                        for i in self.session.get_inputs()]
        self._paths = [p for p, _ in leaves(self.obs_space)]
        if len(self._paths) != len(self._inputs):
            raise CheckpointError(f"'{path}': {len(self._inputs)} inputs for an observation "
                                  f"space of {len(self._paths)} leaves")
        self._leaf_shapes = [leaf.shape for _, leaf in leaves(self.obs_space)]

    @property
    def algo(self) -> str:
        return self.metadata.get("algo", "")

    @property
    def env_id(self) -> str:
        return self.metadata.get("env_id", "")

    def act(self, obs: Any) -> np.ndarray:
        """One observation -> one action; a batch [N, ...] (on every leaf) -> [N, ...]."""
        try:
            single = batch_size(self.obs_space, obs) is None
        except ValueError as exc:
            raise ExportError(f"OnnxPolicy.act: {exc}") from None
        feed = {}
        for (name, dtype), path, leaf_shape in zip(self._inputs, self._paths,
                                                   self._leaf_shapes):
            x = np.asarray(get_leaf(obs, path), dtype)
            feed[name] = x.reshape((1, *leaf_shape)) if single else x
        action = self.session.run(None, feed)[0]
        return action[0] if single else action

    __call__ = act

    def reset(self) -> None:
        """Start of an episode. The exported policies are stateless (no frame stack, action
        repeat or delay is part of a tandem run yet), so there is nothing to clear; a control
        loop calls it anyway so that it keeps working when one is."""


__all__ = ["OnnxPolicy"]
