"""Deep Deterministic Policy Gradient, DDPG (Lillicrap et al., 2016).

DDPG is TD3 without its three additions: one critic (no clipped double-Q), the actor and the
targets updated at every critic step (no delay), and no target policy smoothing. Rather than
a second copy of the deterministic actor-critic update, this file declares DDPG's config and
builds it with TD3's functions, as Stable-Baselines3 does; the equivalence is tested
(tests/algos/test_offpolicy_family.py).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from tandem.algos.td3 import TD3Config, make_td3
from tandem.config import param
from tandem.core.offpolicy import OffPolicyFns


@dataclasses.dataclass(frozen=True)
class DDPGConfig(TD3Config):
    """DDPG hyperparameters. Defaults follow SB3's DDPG (the paper's 400-300 networks, lr 1e-3,
    tau 0.005); exploration is Gaussian by default, Ornstein-Uhlenbeck as in the paper with
    ``exploration_noise=ou``."""

    algo = "ddpg"

    hidden_sizes: tuple[int, ...] = param((400, 300), "hidden layer widths of actor and critic "
                                          "(simbav2: equal widths, one block per entry)")
    n_critics: int = param(1, "number of Q networks (DDPG: 1; more gives TD3's clipped "
                           "double-Q)", ge=1)
    policy_delay: int = param(1, "critic steps per actor and target update (DDPG: 1)", ge=1)
    target_noise: float = param(0.0, "std of target policy smoothing noise (DDPG: 0, off)",
                                ge=0.0)

    # TD3's search without target_noise (DDPG has no target policy smoothing).
    search_space: ClassVar[dict] = {k: v for k, v in TD3Config.search_space.items()
                                    if k != "target_noise"}


def make_ddpg(cfg: DDPGConfig, obs_dim: int, action_dim: int) -> OffPolicyFns:
    """Jitted DDPG functions: TD3's update run with DDPG's settings."""
    return make_td3(cfg, obs_dim, action_dim)
