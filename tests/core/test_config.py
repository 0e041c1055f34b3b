import pytest

from tandem import SACConfig
from tandem.errors import ConfigError


@pytest.mark.parametrize("kwargs, message", [
    ({"tau": 1.5}, r"SACConfig.tau=1.5 is out of range: must be > 0.0 and <= 1.0"),
    ({"gamma": -0.1}, r"SACConfig.gamma=-0.1 is out of range"),
    ({"batch_size": 0}, r"SACConfig.batch_size=0 is out of range: must be >= 1"),
    ({"batch_size": 2.5}, r"expected an integer"),
    ({"actor_lr": float("nan")}, r"finite"),
    ({"hidden_sizes": (256, -1)}, r"positive integer"),
    ({"activation": "sigmoidal"}, r"must be one of relu"),
    ({"autotune_alpha": "yes"}, r"true or false"),
    ({"batch_size": 512, "buffer_size": 100}, r"exceeds buffer_size"),
])
def test_bad_values_name_the_field_and_range(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SACConfig(**kwargs)


def test_unknown_field_suggests_close_names():
    with pytest.raises(ConfigError, match="did you mean batch_size"):
        SACConfig.from_dict({"batchsize": 3})
    with pytest.raises(ConfigError, match="did you mean"):
        SACConfig().replace(learning_start=3)


def test_round_trip_and_parse():
    cfg = SACConfig(hidden_sizes=(64, 32), target_entropy=-2.0)
    assert SACConfig.from_dict(cfg.to_dict()) == cfg
    assert SACConfig.parse_value("hidden_sizes", "400,300") == (400, 300)
    assert SACConfig.parse_value("hidden_sizes", "256x256") == (256, 256)
    assert SACConfig.parse_value("normalize_obs", "true") is True
    assert SACConfig.parse_value("buffer_size", "1e6") == 1_000_000
    assert SACConfig.parse_value("max_grad_norm", "none") is None
    with pytest.raises(ConfigError, match="cannot read '1.5' as an integer"):
        SACConfig.parse_value("batch_size", "1.5")
    assert "--batch-size" in SACConfig.describe()
