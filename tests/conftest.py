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
