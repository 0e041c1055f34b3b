"""tandem: actor-critic reinforcement learning in JAX.

    from tandem import SACConfig, train, load
    run = train(SACConfig(), "Pendulum-v1", steps=20_000, out="runs/pendulum")
    policy = load("runs/pendulum")
    action = policy.act(obs)
"""

__version__ = "0.1.0"

from tandem.algos.ddpg import DDPGConfig  # noqa: E402
from tandem.algos.droq import DroQConfig  # noqa: E402
from tandem.algos.impala import IMPALAConfig  # noqa: E402
from tandem.algos.ppo import A2CConfig, PPOConfig  # noqa: E402
from tandem.algos.sac import SACConfig  # noqa: E402
from tandem.algos.td3 import TD3Config  # noqa: E402
from tandem.errors import (CheckpointError, ConfigError, EnvError, TandemError,  # noqa: E402
                           TrainingDiverged, TrainingInterrupted)
from tandem.host.run import Policy, Run, evaluate, load, resume, train  # noqa: E402

__all__ = ["SACConfig", "DroQConfig", "TD3Config", "DDPGConfig", "PPOConfig", "A2CConfig",
           "IMPALAConfig", "train", "resume", "load", "evaluate", "Run", "Policy", "TandemError",
           "ConfigError", "EnvError", "CheckpointError", "TrainingInterrupted", "TrainingDiverged",
           "__version__"]
