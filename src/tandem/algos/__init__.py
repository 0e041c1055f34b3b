"""Algorithm registry: name -> config class, builder, and the action spaces it accepts."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class AlgoSpec:
    name: str
    config_cls: type
    make_fns: Callable[..., Any]
    action_spaces: tuple[str, ...]
    driver: str  # which driver trains it: "offpolicy", "onpolicy" or "impala" (Ray workers)

    def build(self, cfg, env_spec: dict):
        """The algorithm's functions for a run's ``env_spec`` (obs_dim, action space)."""
        if self.driver in ("onpolicy", "impala"):
            from tandem.core.types import ActionSpace
            return self.make_fns(cfg, int(env_spec["obs_dim"]), ActionSpace.from_json(env_spec))
        return self.make_fns(cfg, int(env_spec["obs_dim"]), int(env_spec["action_dim"]))


ON_POLICY_SPACES = ("Box", "Discrete", "MultiDiscrete")


def _registry() -> dict[str, AlgoSpec]:
    from tandem.algos.ddpg import DDPGConfig, make_ddpg
    from tandem.algos.droq import DroQConfig, make_droq
    from tandem.algos.impala import IMPALAConfig, make_impala
    from tandem.algos.ppo import A2CConfig, PPOConfig, make_ppo
    from tandem.algos.sac import SACConfig, make_sac
    from tandem.algos.td3 import TD3Config, make_td3
    return {
        "sac": AlgoSpec("sac", SACConfig, make_sac, ("Box",), "offpolicy"),
        "droq": AlgoSpec("droq", DroQConfig, make_droq, ("Box",), "offpolicy"),
        "td3": AlgoSpec("td3", TD3Config, make_td3, ("Box",), "offpolicy"),
        "ddpg": AlgoSpec("ddpg", DDPGConfig, make_ddpg, ("Box",), "offpolicy"),
        "ppo": AlgoSpec("ppo", PPOConfig, make_ppo, ON_POLICY_SPACES, "onpolicy"),
        "a2c": AlgoSpec("a2c", A2CConfig, make_ppo, ON_POLICY_SPACES, "onpolicy"),
        "impala": AlgoSpec("impala", IMPALAConfig, make_impala, ON_POLICY_SPACES, "impala"),
    }


def get_algo(name: str) -> AlgoSpec:
    from tandem.errors import ConfigError
    reg = _registry()
    if name not in reg:
        raise ConfigError(f"unknown algorithm '{name}'; available: {', '.join(sorted(reg))}")
    return reg[name]


def algo_names() -> list[str]:
    return sorted(_registry())


def algos_for_action_space(space_name: str) -> list[str]:
    return [n for n, s in _registry().items() if space_name in s.action_spaces]
