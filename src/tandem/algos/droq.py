"""DroQ: SAC with dropout Q-functions and a high update-to-data ratio (Hiraoka et al., 2022).

DroQ replaces REDQ's large Q ensemble with two critics whose hidden layers are
Dense -> Dropout -> LayerNorm -> ReLU, and takes many critic steps per env step. Everything
else is SAC, so DroQ is a SAC configuration: this file only sets its defaults, and
``algos/sac.py`` (``critic_dropout``, ``critic_layer_norm``, ``policy_delay``) does the work.
"""

from __future__ import annotations

import dataclasses

from tandem.algos.sac import SACConfig, make_sac
from tandem.config import param
from tandem.core.offpolicy import OffPolicyFns


@dataclasses.dataclass(frozen=True)
class DroQConfig(SACConfig):
    """DroQ hyperparameters (paper Table 2 / SBX): UTD 20, dropout 0.01, layer norm, two
    critics, one actor update per env step."""

    algo = "droq"

    gradient_steps: int = param(20, "gradient steps per training call, fused in one jitted "
                                "scan (DroQ's update-to-data ratio G = 20)", ge=1)
    policy_delay: int = param(20, "critic steps per actor/temperature step (one actor step per "
                              "env step at G = 20, as in REDQ and DroQ)", ge=1)
    critic_dropout: float = param(0.01, "dropout rate in the critics", ge=0.0, lt=1.0)
    critic_layer_norm: bool = param(True, "layer normalisation in the critics")


def make_droq(cfg: DroQConfig, obs_dim: int, action_dim: int) -> OffPolicyFns:
    """Jitted DroQ functions: SAC's update with dropout critics."""
    return make_sac(cfg, obs_dim, action_dim)
