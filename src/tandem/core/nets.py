"""Network building blocks (Flax linen): the observation encoder, MLP, SimbaV2-style
hyperspherical MLP, Q ensembles.

Every torso has the same constructor signature, so an algorithm picks one by name
(``NETWORKS[cfg.network]``) for its actor and its critics. Observations reach the networks
in the structure of the env's observation space (``tandem.core.spaces``); :func:`encode`
turns them into one flat feature vector first.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from tandem.core.spaces import Space, get_leaf, leaves

ACTIVATIONS: dict[str, Callable] = {"relu": nn.relu, "tanh": nn.tanh, "elu": nn.elu,
                                    "gelu": nn.gelu, "silu": nn.silu}


def encode(space: Space | None, obs) -> jax.Array:
    """Observations structured as ``space`` -> float32 features [..., feature_dim], the
    encoding of ``gymnasium.spaces.flatten``: Box and MultiBinary leaves flattened and cast,
    Discrete and MultiDiscrete leaves one-hot, leaves concatenated in the space's order. Any
    leading batch dims are kept. ``space=None``: ``obs`` are features already."""
    if space is None:
        return obs
    if space.kind == "box" and len(space.shape) == 1:  # the common case: nothing to do
        return jnp.asarray(obs, jnp.float32)
    parts = []
    for path, leaf in leaves(space):
        x = jnp.asarray(get_leaf(obs, path))
        batch = x.shape[:x.ndim - len(leaf.shape)]
        if leaf.kind == "discrete":
            parts.append(jax.nn.one_hot(x - leaf.start[0], leaf.nvec[0], dtype=jnp.float32))
        elif leaf.kind == "multidiscrete":
            parts += [jax.nn.one_hot(x[..., i] - leaf.start[i], n, dtype=jnp.float32)
                      for i, n in enumerate(leaf.nvec)]
        else:
            parts.append(x.astype(jnp.float32).reshape(batch + (-1,)))
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)


def fan_in_uniform(scale: float = 1.0) -> Callable:
    """U(-scale / sqrt(fan_in), scale / sqrt(fan_in)): PyTorch's default for ``nn.Linear``
    kernels and biases, which Stable-Baselines3's networks get. For a bias, ``fan_in`` is the
    layer's input width, which :class:`MLP` passes (a bias's own shape does not carry it).

    This is the off-policy networks' init since issue 22: with Flax's default (lecun-normal
    hidden kernels, a glorot-uniform last layer, zero biases) SAC's actor started with most
    action dimensions saturated (|tanh(mean)| > 0.5 in 80-87% of HalfCheetah's) and learned
    HalfCheetah worse than SB3 (docs/sac.md, "Initialisation")."""

    def init(key: jax.Array, shape, dtype=jnp.float32, fan_in: int | None = None) -> jax.Array:
        bound = scale / math.sqrt(fan_in if fan_in is not None else shape[0])
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _glorot_uniform(scale: float):
    return nn.initializers.variance_scaling(scale, "fan_avg", "uniform")


# jaxlib runs a batched QR (what vmap makes of jnp.linalg.qr: seeds vmapped on the compiled
# path, a vmapped Q ensemble) by splitting the batch over XLA's intra-op thread pool and
# waiting for the pieces from inside that same pool. When two such QRs of one init program
# run at once and the pool has two threads (a 2-core machine), each thread waits for work
# that no thread is free to run, and the program never finishes. That hung a CI run; gdb on
# the same test hung here showed both "tf_XLAEigen" threads blocked in jax::ParallelBatchMap
# under lapack_sgeqrf_ffi.
# A QR of one matrix runs inline, so under vmap this one loops over the batch: the same
# factorisation of each matrix, the same numbers, and no wait on the pool.
@jax.custom_batching.sequential_vmap
def _qr_one_at_a_time(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.linalg.qr(a)


def orthogonal(scale: float = 1.0) -> Callable:
    """Orthogonal kernel init (Saxe et al., 2014) with gain ``scale``, columns on the last
    axis: the same draw as ``jax.nn.initializers.orthogonal`` for these arguments, but safe
    to vmap (see ``_qr_one_at_a_time``)."""

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        if len(shape) < 2:
            raise ValueError(f"orthogonal init needs a kernel of rank >= 2, got shape {shape}")
        cols = shape[-1]
        rows = 1
        for d in shape[:-1]:
            rows *= d
        tall = rows >= cols  # factorise the tall orientation, transpose back if wide
        a = jax.random.normal(key, (rows, cols) if tall else (cols, rows), dtype)
        q, r = _qr_one_at_a_time(a)
        q = q * jnp.sign(jnp.diagonal(r))[None, :]  # unique Q: R with a positive diagonal
        if not tall:
            q = q.T
        return scale * q.reshape(shape)

    return init


class MLP(nn.Module):
    """Dense layers with an activation between them; the last layer is linear.

    With ``dropout > 0`` and/or ``layer_norm`` each hidden layer is
    Dense -> Dropout -> LayerNorm -> activation, the dropout Q-function of DroQ (Hiraoka et
    al., 2022, Sec. 4). Dropout is active only when ``deterministic`` is False (then the
    caller passes a ``dropout`` PRNG stream).

    Initialisation: PyTorch's ``nn.Linear`` default (:func:`fan_in_uniform`, kernels and
    biases), or with ``orthogonal`` the on-policy convention.
    """

    hidden_sizes: Sequence[int]
    out_dim: int
    activation: str = "relu"
    out_scale: float = 1.0  # scale of the last layer's init (small values: near-zero outputs)
    dropout: float = 0.0
    layer_norm: bool = False
    deterministic: bool = True
    # orthogonal init (gain sqrt 2 hidden, out_scale last): the on-policy convention
    # (Engstrom et al., 2020; Andrychowicz et al., 2021)
    orthogonal: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = nn.Dense(width, **self._inits(x, last=False))(x)
            if self.dropout > 0.0:
                x = nn.Dropout(self.dropout, deterministic=self.deterministic)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return nn.Dense(self.out_dim, **self._inits(x, last=True))(x)

    def _inits(self, x: jax.Array, last: bool) -> dict:
        """On-policy: orthogonal kernels (gain sqrt 2 hidden, ``out_scale`` last) and zero
        biases. Off-policy: PyTorch's U(+-1/sqrt(fan_in)) for kernels and biases, the last
        layer's bound times ``out_scale``."""
        if self.orthogonal:
            return {"kernel_init": orthogonal(self.out_scale if last else 2.0 ** 0.5)}
        init = functools.partial(fan_in_uniform(self.out_scale if last else 1.0),
                                 fan_in=x.shape[-1])
        return {"kernel_init": init, "bias_init": init}


# ---------------------------------------------------------------------------- SimbaV2
def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Project onto the unit hypersphere along the last axis."""
    return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + eps)


class HyperDense(nn.Module):
    """Dense layer whose weight vectors live on the unit sphere, followed by a learned
    per-unit scale. The normalisation is done in the forward pass (a weight-normalised
    parameterisation), which constrains the same function class as SimbaV2's projection of
    the weights after each optimiser step without an extra hook in every update."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param("kernel", orthogonal(), (x.shape[-1], self.features))
        w = w / (jnp.linalg.norm(w, axis=0, keepdims=True) + 1e-6)  # unit norm per unit
        scale = self.param("scale", nn.initializers.ones, (self.features,))
        return (x @ w) * scale


class SimbaV2MLP(nn.Module):
    """Hyperspherical-normalisation network in the style of SimbaV2 (Lee et al., 2025).

    x -> [x, c_shift] -> l2norm -> HyperDense(width) -> l2norm -> L residual blocks -> Dense.
    Each block is h <- l2norm(h + alpha * (l2norm(MLP(h)) - h)) with a learned per-feature
    interpolation alpha (an update on the sphere instead of an unbounded residual sum), and
    MLP = HyperDense(4 width) -> activation -> HyperDense(width). ``hidden_sizes`` gives the
    width (all entries equal) and the number of blocks L = len(hidden_sizes). SimbaV2's
    distributional critic and reward scaling are not part of this torso.
    """

    hidden_sizes: Sequence[int]
    out_dim: int
    activation: str = "relu"
    out_scale: float = 1.0
    dropout: float = 0.0          # unused; same signature as MLP
    layer_norm: bool = False      # unused
    deterministic: bool = True    # unused
    c_shift: float = 3.0          # constant appended to the input before normalising

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        width, blocks = self.hidden_sizes[0], len(self.hidden_sizes)
        shift = jnp.full(x.shape[:-1] + (1,), self.c_shift, x.dtype)
        h = l2_normalize(HyperDense(width)(l2_normalize(jnp.concatenate([x, shift], -1))))
        for i in range(blocks):
            y = HyperDense(width)(act(HyperDense(4 * width)(h)))
            alpha = self.param(f"alpha_{i}", nn.initializers.constant(1.0 / (blocks + 1)),
                               (width,))
            h = l2_normalize(h + alpha * (l2_normalize(y) - h))
        return nn.Dense(self.out_dim, kernel_init=_glorot_uniform(self.out_scale))(h)


NETWORKS: dict[str, type[nn.Module]] = {"mlp": MLP, "simbav2": SimbaV2MLP}


class QEnsemble(nn.Module):
    """``n`` independent Q(s, a) networks evaluated in one call via vmap over their parameters.

    Returns [n, ...batch] Q-values. Parameters carry a leading ensemble axis of size n. With
    ``train=True`` dropout (if configured) is active and needs a ``dropout`` PRNG stream.
    """

    hidden_sizes: Sequence[int]
    n: int = 2
    activation: str = "relu"
    network: str = "mlp"
    dropout: float = 0.0
    layer_norm: bool = False
    obs_space: Space | None = None  # observations structured as this (None: features)

    @nn.compact
    def __call__(self, obs, action: jax.Array, train: bool = False) -> jax.Array:
        ensemble = nn.vmap(NETWORKS[self.network], variable_axes={"params": 0},
                           split_rngs={"params": True, "dropout": True},
                           in_axes=None, out_axes=0, axis_size=self.n)
        x = jnp.concatenate([encode(self.obs_space, obs), action], axis=-1)
        return ensemble(self.hidden_sizes, 1, self.activation, dropout=self.dropout,
                        layer_norm=self.layer_norm, deterministic=not train)(x)[..., 0]
