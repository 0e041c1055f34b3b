"""Ray for tandem: join or start a cluster, set worker processes up, say what is missing.

tandem never runs its own RPC: workers are Ray actors, sweeps are Ray tasks, parameters travel
through Ray's object store. Without ``ray_address`` a local Ray is started once per process
(every core, no dashboard) and reused by later runs; with one, tandem joins that cluster.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from tandem.errors import ConfigError

log = logging.getLogger("tandem")


def require_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("this needs Ray (rollout workers, IMPALA, sweeps): "
                          "pip install 'tandem-rl[ray]'") from None
    return ray


def init_ray(address: str | None = None):
    """The ray module, connected: to ``address`` if given, else to a running Ray in this
    process, else to a new local one."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "configure_logging": False}
    if address:
        log.info("joining the Ray cluster at %s", address)
    else:
        # a local cluster: workers inherit this process's environment (JAX_PLATFORMS, ...)
        # and working directory, so envs registered from an importable module work there too
        kwargs["num_cpus"] = os.cpu_count() or 1
    with warnings.catch_warnings():
        # Ray starts its daemons with fork+exec, which is safe; JAX warns about any fork
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called",
                                category=RuntimeWarning)
        ray.init(address=address, **kwargs)
    return ray


def setup_worker_process() -> None:
    """Called first in every worker: act on the CPU with one XLA thread. A worker runs one
    small policy per env step; the accelerator (if any) belongs to the learner, and several
    workers may share a core."""
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                          "intra_op_parallelism_threads=1")
    import jax
    jax.config.update("jax_platforms", "cpu")


def register_spec(gym_spec: Any) -> None:
    """Make an env registered in the driver (``gymnasium.register`` in a user's script) known
    to this worker process too: its EnvSpec travels with the worker's arguments."""
    import gymnasium as gym
    if gym_spec is not None and gym_spec.id not in gym.registry:
        gym.registry[gym_spec.id] = gym_spec


def driver_spec(env_id: str | None) -> Any:
    """The EnvSpec workers need to make ``env_id`` (None for a module-qualified id)."""
    import gymnasium as gym
    if env_id is None:
        raise ConfigError("rollout workers run in other processes and make their own envs: "
                          "pass a registered env id (gymnasium.register) instead of an "
                          "unregistered instance")
    return gym.registry.get(env_id)
