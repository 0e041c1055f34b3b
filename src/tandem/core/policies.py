"""Actor and critic modules shared by the algorithms (Flax linen).

Each takes observations structured as the env's observation space and encodes them
(``tandem.core.nets.encode``) before its torso, so the same module serves flat vectors,
Dict/Tuple and discrete observations. The Q ensemble is ``tandem.core.nets.QEnsemble``.

- :class:`TanhGaussianActor`: SAC's squashed Gaussian with a state-dependent std;
- :class:`DeterministicActor`: TD3/DDPG's tanh(pi(s));
- :class:`GaussianActor`: IQL's Gaussian with a tanh mean and a state-independent std;
- :class:`PolicyHead`: the on-policy actor (PPO, A2C, IMPALA): a Gaussian with a
  state-independent std for Box actions, Categorical for Discrete, independent Categoricals
  for MultiDiscrete; orthogonal init with a small last layer;
- :class:`ValueCritic`: V(s) for the on-policy learners (and IQL, with PyTorch's init).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from tandem.core.distributions import Categorical, MultiCategorical, Normal, TanhNormal
from tandem.core.nets import MLP, NETWORKS, encode
from tandem.core.spaces import Space

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # as in SB3; keeps exp(log_std) finite


SQUASH_EPS = {"exact": 0.0, "bounded": 1e-6}  # squash corrections (tanh_log_det_jacobian)


class TanhGaussianActor(nn.Module):
    """obs -> TanhNormal over actions in (-1, 1): one torso with 2 x action_dim outputs,
    split into the mean and the log-std (clipped to [LOG_STD_MIN, LOG_STD_MAX]).
    ``squash_correction``: "bounded" (SB3's log(1 - tanh^2 + 1e-6)) or "exact"."""

    hidden_sizes: tuple[int, ...]
    action_dim: int
    activation: str = "relu"
    network: str = "mlp"
    obs_space: Space | None = None
    squash_correction: str = "bounded"

    @nn.compact
    def __call__(self, obs) -> TanhNormal:
        out = NETWORKS[self.network](self.hidden_sizes, 2 * self.action_dim,
                                     self.activation)(encode(self.obs_space, obs))
        mean, log_std = jnp.split(out, 2, axis=-1)
        log_std = jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
        return TanhNormal(mean, jnp.exp(log_std), SQUASH_EPS[self.squash_correction])


class DeterministicActor(nn.Module):
    """obs -> action in [-1, 1] (tanh of the torso's output)."""

    hidden_sizes: tuple[int, ...]
    action_dim: int
    activation: str = "relu"
    network: str = "mlp"
    obs_space: Space | None = None

    @nn.compact
    def __call__(self, obs) -> jax.Array:
        return jnp.tanh(NETWORKS[self.network](self.hidden_sizes, self.action_dim,
                                               self.activation)(encode(self.obs_space, obs)))


class GaussianActor(nn.Module):
    """obs -> Normal(tanh(mean(s)), exp(log_std)) with a state-independent log-std clipped to
    [-5, 2]: the policy of IQL's advantage-weighted regression (Kostrikov et al., 2022, and
    its code), whose log-density is taken at dataset actions in [-1, 1] without a squash.
    The deterministic action is the mean."""

    hidden_sizes: tuple[int, ...]
    action_dim: int
    activation: str = "relu"
    network: str = "mlp"
    obs_space: Space | None = None

    @nn.compact
    def __call__(self, obs) -> Normal:
        mean = jnp.tanh(NETWORKS[self.network](self.hidden_sizes, self.action_dim,
                                               self.activation)(encode(self.obs_space, obs)))
        log_std = jnp.clip(self.param("log_std", nn.initializers.zeros, (self.action_dim,)),
                           -5.0, 2.0)
        return Normal(mean, jnp.broadcast_to(jnp.exp(log_std), mean.shape))


class PolicyHead(nn.Module):
    """obs -> action distribution of the on-policy learners: diagonal Gaussian with a
    state-independent log std (Box), Categorical (Discrete) or independent Categoricals
    (MultiDiscrete)."""

    hidden_sizes: tuple[int, ...]
    action: Space
    activation: str = "tanh"
    log_std_init: float = 0.0
    obs_space: Space | None = None

    @nn.compact
    def __call__(self, obs):
        out_dim = self.action.dim if self.action.kind == "box" else sum(self.action.nvec)
        # a small last layer: the initial policy is near uniform / near zero mean
        out = MLP(self.hidden_sizes, out_dim, self.activation, out_scale=0.01,
                  orthogonal=True)(encode(self.obs_space, obs))
        if self.action.kind == "box":
            log_std = self.param("log_std", nn.initializers.constant(self.log_std_init),
                                 (self.action.dim,))
            return Normal(out, jnp.broadcast_to(jnp.exp(log_std), out.shape))
        if self.action.kind == "discrete":
            return Categorical(out)
        return MultiCategorical(out, self.action.nvec)


class ValueCritic(nn.Module):
    """obs -> V(s) [...]; orthogonal init (on-policy) or PyTorch's (``orthogonal=False``)."""

    hidden_sizes: tuple[int, ...]
    activation: str = "tanh"
    obs_space: Space | None = None
    orthogonal: bool = True

    @nn.compact
    def __call__(self, obs) -> jax.Array:
        return MLP(self.hidden_sizes, 1, self.activation, out_scale=1.0,
                   orthogonal=self.orthogonal)(encode(self.obs_space, obs))[..., 0]
