"""Algorithm registry: name -> where its config and builder live, the action spaces it
accepts and the kind of driver that trains it.

The registry holds names, not modules: an algorithm's module is imported the first time its
config or builder is asked for, so listing algorithms (``tandem --help``) imports none of
them, and ``tandem config sac`` imports SAC's file only.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from tandem.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class AlgoSpec:
    name: str
    module: str                     # "tandem.algos.sac"
    config_name: str                # "SACConfig"
    builder_name: str               # "make_sac": (config, EnvSpec) -> AgentFns
    action_spaces: tuple[str, ...]  # Gymnasium action-space class names it can drive
    driver: str  # "offpolicy" (replay), "onpolicy" (rollouts), "impala" (Ray workers) or
    #              "offline" (a fixed dataset)

    @property
    def config_cls(self) -> type:
        return getattr(importlib.import_module(self.module), self.config_name)

    def build(self, cfg, spec) -> Any:
        """The algorithm's functions (:class:`tandem.core.agent.AgentFns`) for ``cfg`` on an
        env described by ``spec`` (:class:`tandem.core.spaces.EnvSpec`)."""
        return getattr(importlib.import_module(self.module), self.builder_name)(cfg, spec)


ON_POLICY_SPACES = ("Box", "Discrete", "MultiDiscrete")

_REGISTRY = {s.name: s for s in (
    AlgoSpec("sac", "tandem.algos.sac", "SACConfig", "make_sac", ("Box",), "offpolicy"),
    # DroQ is SAC with dropout critics and a high update-to-data ratio: a SAC configuration
    AlgoSpec("droq", "tandem.algos.sac", "DroQConfig", "make_sac", ("Box",), "offpolicy"),
    AlgoSpec("td3", "tandem.algos.td3", "TD3Config", "make_td3", ("Box",), "offpolicy"),
    # DDPG is TD3 with its three additions off: a TD3 configuration
    AlgoSpec("ddpg", "tandem.algos.td3", "DDPGConfig", "make_td3", ("Box",), "offpolicy"),
    AlgoSpec("ppo", "tandem.algos.ppo", "PPOConfig", "make_ppo", ON_POLICY_SPACES, "onpolicy"),
    AlgoSpec("a2c", "tandem.algos.ppo", "A2CConfig", "make_ppo", ON_POLICY_SPACES, "onpolicy"),
    AlgoSpec("impala", "tandem.algos.impala", "IMPALAConfig", "make_impala", ON_POLICY_SPACES,
             "impala"),
    # offline: learn from a dataset (`--dataset`), steps are gradient steps
    AlgoSpec("bc", "tandem.algos.bc", "BCConfig", "make_bc", ("Box",), "offline"),
    AlgoSpec("iql", "tandem.algos.iql", "IQLConfig", "make_iql", ("Box",), "offline"),
    AlgoSpec("cfpi", "tandem.algos.cfpi", "CFPIConfig", "make_cfpi", ("Box",), "offline"),
    # CSVE fits a dynamics ensemble first (part of --steps), then a conservative V on it
    AlgoSpec("csve", "tandem.algos.csve", "CSVEConfig", "make_csve", ("Box",), "offline"),
    # SAC-RND is SAC's update with RND-penalised losses passed in
    AlgoSpec("sac-rnd", "tandem.algos.sac_rnd", "SACRNDConfig", "make_sac_rnd", ("Box",),
             "offline"),
    # TD3+BC is TD3's update with a behaviour-cloning actor loss: a TD3 configuration
    AlgoSpec("td3bc", "tandem.algos.td3", "TD3BCConfig", "make_td3", ("Box",), "offline"),
)}


def get_algo(name: str) -> AlgoSpec:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown algorithm '{name}'; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def algo_names() -> list[str]:
    return sorted(_REGISTRY)


def algos_for_action_space(space_name: str, compiled: bool = False) -> list[str]:
    """Algorithms that can drive an env with this action space (``compiled``: only those that
    also run as one compiled program on a JAX-native env)."""
    return sorted(n for n, s in _REGISTRY.items() if space_name in s.action_spaces
                  and s.driver != "offline" and not (compiled and s.driver == "impala"))
