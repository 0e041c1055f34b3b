import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tandem import SACConfig  # noqa: E402

# One tiny config shared by the tests, so jitted functions compile once per obs/action shape
# (make_sac is cached on its arguments).
TINY = SACConfig(hidden_sizes=(16, 16), batch_size=32, buffer_size=5_000, learning_starts=50,
                 eval_episodes=1, log_every=100, checkpoint_every=0)


@pytest.fixture
def tiny_cfg() -> SACConfig:
    return TINY


def host_driver(cfg, env, seed=0):
    """A started off-policy host driver on ``env`` (an id or an instance)."""
    from tandem.algos import get_algo
    from tandem.envs.gym import make_env
    from tandem.host.offpolicy import OffPolicyDriver
    algo = get_algo(cfg.algo)
    genv = make_env(env, cfg.algo, algo.action_spaces)
    driver = OffPolicyDriver(cfg, genv, algo.build(cfg, genv.spec), seed, cfg.algo)
    driver.start()
    return driver


def advance(driver, until):
    """Drive ``driver`` to step ``until`` without a session."""
    from tandem.run.driver import Control
    driver.advance(until, Control(until))
