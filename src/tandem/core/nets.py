"""Network building blocks (Flax linen)."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable] = {"relu": nn.relu, "tanh": nn.tanh, "elu": nn.elu,
                                    "gelu": nn.gelu, "silu": nn.silu}


class MLP(nn.Module):
    """Fully connected layers with an activation between them; the last layer is linear."""

    hidden_sizes: Sequence[int]
    out_dim: int
    activation: str = "relu"
    out_scale: float = 1.0  # scale of the last layer's init (small values: near-zero outputs)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden_sizes:
            x = act(nn.Dense(width)(x))
        init = nn.initializers.variance_scaling(self.out_scale, "fan_avg", "uniform")
        return nn.Dense(self.out_dim, kernel_init=init)(x)


class QEnsemble(nn.Module):
    """``n`` independent Q(s, a) MLPs evaluated in one call via vmap over their parameters.

    Returns [n, ...batch] Q-values. Parameters carry a leading ensemble axis of size n.
    """

    hidden_sizes: Sequence[int]
    n: int = 2
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        ensemble = nn.vmap(MLP, variable_axes={"params": 0}, split_rngs={"params": True},
                           in_axes=None, out_axes=0, axis_size=self.n)
        x = jnp.concatenate([obs, action], axis=-1)
        return ensemble(self.hidden_sizes, 1, self.activation)(x)[..., 0]
