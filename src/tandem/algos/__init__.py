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
    driver: str  # which host driver trains it ("offpolicy")


def _registry() -> dict[str, AlgoSpec]:
    from tandem.algos.ddpg import DDPGConfig, make_ddpg
    from tandem.algos.droq import DroQConfig, make_droq
    from tandem.algos.sac import SACConfig, make_sac
    from tandem.algos.td3 import TD3Config, make_td3
    return {
        "sac": AlgoSpec("sac", SACConfig, make_sac, ("Box",), "offpolicy"),
        "droq": AlgoSpec("droq", DroQConfig, make_droq, ("Box",), "offpolicy"),
        "td3": AlgoSpec("td3", TD3Config, make_td3, ("Box",), "offpolicy"),
        "ddpg": AlgoSpec("ddpg", DDPGConfig, make_ddpg, ("Box",), "offpolicy"),
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
