"""tandem: actor-critic reinforcement learning in JAX.

    from tandem import SACConfig, train, load
    run = train(SACConfig(), "Pendulum-v1", steps=20_000, out="runs/pendulum")
    policy = load("runs/pendulum")
    action = policy.act(obs)

Public names resolve on first use (module ``__getattr__``): ``import tandem`` imports no
numerical library, so the deploy runtime and the command line's help start fast, and a
torch-based part never loads for a JAX user.
"""

from __future__ import annotations

import importlib
from typing import Any

from tandem.errors import (CheckpointError, ConfigError, EnvError, TandemError,
                           TrainingDiverged, TrainingInterrupted)
from tandem.version import __version__

_LAZY = {
    "SACConfig": "tandem.algos.sac", "DroQConfig": "tandem.algos.sac",
    "TD3Config": "tandem.algos.td3", "DDPGConfig": "tandem.algos.td3",
    "PPOConfig": "tandem.algos.ppo", "A2CConfig": "tandem.algos.ppo",
    "IMPALAConfig": "tandem.algos.impala",
    "train": "tandem.api", "resume": "tandem.api", "load": "tandem.api",
    "evaluate": "tandem.api",
    "Run": "tandem.run.results", "Policy": "tandem.run.results", "Sweep": "tandem.run.results",
}

__all__ = ["SACConfig", "DroQConfig", "TD3Config", "DDPGConfig", "PPOConfig", "A2CConfig",
           "IMPALAConfig", "train", "resume", "load", "evaluate", "Run", "Policy", "Sweep",
           "TandemError", "ConfigError", "EnvError", "CheckpointError", "TrainingInterrupted",
           "TrainingDiverged", "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tandem' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
