"""Env specs instead of obs_dim (issue 14): spaces keep each observation leaf's shape and
dtype; replay buffers store them as they are; a deployed policy batches every space."""

import gymnasium as gym
import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.core.nets import encode
from tandem.core.replay import HostReplay
from tandem.core.spaces import EnvSpec, Space, canonical, feature_dim, flatten, zeros
from tandem.envs.gym import space_of
from tandem.run.results import Policy

IMAGE_AND_VECTOR = Space.dict_of({"image": Space.box((8, 8, 3), "uint8"),
                                  "vec": Space.box((3,))})


def _obs(i: int) -> dict:
    return {"image": np.full((8, 8, 3), i % 256, np.uint8),
            "vec": np.array([i, -i, 0.5 * i], np.float32)}


def test_replay_keeps_each_leaf_with_its_own_shape_and_dtype():
    buf = HostReplay(capacity=6, obs_space=IMAGE_AND_VECTOR, action_dim=2)
    assert buf.data["obs/image"].dtype == np.uint8 and buf.data["obs/image"].shape == (6, 8, 8, 3)
    assert buf.data["next_obs/vec"].dtype == np.float32
    for i in range(9):  # wraps: rows 3..8 remain
        buf.add(_obs(i), np.full(2, i, np.float32), float(i), _obs(i + 1), 0.0, i % 4 == 3,
                i % 4 == 0)
    batch = buf.sample(np.random.default_rng(0), 2, 5)
    assert batch.obs["image"].dtype == np.uint8 and batch.obs["image"].shape == (2, 5, 8, 8, 3)
    assert batch.next_obs["vec"].shape == (2, 5, 3)
    # rows stay consistent: next_obs of row i is obs of row i + 1
    np.testing.assert_array_equal(batch.next_obs["image"][..., 0, 0, 0],
                                  batch.obs["image"][..., 0, 0, 0] + 1)
    np.testing.assert_array_equal(batch.reward, batch.obs["vec"][..., 0])
    # the rows a checkpoint writes (oldest first) restore into a buffer that samples the same
    clone = HostReplay(6, IMAGE_AND_VECTOR, 2)
    clone.restore({f"replay/{k}": v for k, v in buf.rows(buf.count - 6, buf.count).items()},
                  {"count": buf.count, "capacity": 6})
    for a, b in zip(jax.tree_util.tree_leaves(buf.sample(np.random.default_rng(1), 1, 7)),
                    jax.tree_util.tree_leaves(clone.sample(np.random.default_rng(1), 1, 7))):
        np.testing.assert_array_equal(a, b)
    assert clone.data["truncated"].dtype == bool and clone.data["first"].sum() == 2


def test_spec_round_trips_and_reads_the_old_format():
    spec = EnvSpec(IMAGE_AND_VECTOR, Space.box((2,), low=[-1, 0], high=[1, 3]), "x", 50)
    assert EnvSpec.from_json(spec.to_json()) == spec
    old = {"env_id": "Pendulum-v1", "obs_dim": 3, "action_dim": 1, "action_low": [-2.0],
           "action_high": [2.0], "obs_layout": {"type": "box", "shape": [3]},
           "action_space": {"kind": "box"}}
    assert EnvSpec.from_json(old) == EnvSpec.box(3, 1, -2.0, 2.0, "Pendulum-v1")


def test_encoding_matches_gymnasium_flatten():
    g = gym.spaces.Dict({"a": gym.spaces.Discrete(3, start=1),
                         "b": gym.spaces.Box(-1, 1, (2, 2)),
                         "c": gym.spaces.MultiDiscrete([2, 3]),
                         "d": gym.spaces.MultiBinary(3)})
    space = space_of(g)
    g.seed(0)
    for _ in range(5):
        raw = g.sample()
        obs = canonical(space, raw)
        want = gym.spaces.flatten(g, raw).astype(np.float32)
        np.testing.assert_array_equal(flatten(space, obs), want)
        np.testing.assert_allclose(np.asarray(encode(space, obs)), want)
    assert feature_dim(space) == gym.spaces.flatdim(g)


# ---------------------------------------------------------------- Policy.act batches
LEAVES = st.one_of(
    st.tuples(st.integers(1, 3), st.integers(1, 3)).map(lambda s: Space.box(s)),
    st.integers(1, 4).map(lambda n: Space.box((n,))),
    st.integers(2, 5).map(lambda n: Space.discrete(n, start=1)),
    st.lists(st.integers(2, 4), min_size=1, max_size=3).map(Space.multidiscrete),
    st.integers(1, 4).map(Space.multibinary),
)
SPACES = st.one_of(
    LEAVES,
    st.lists(LEAVES, min_size=1, max_size=3).map(
        lambda ls: Space.dict_of({f"k{i}": s for i, s in enumerate(ls)})),
    st.lists(LEAVES, min_size=1, max_size=3).map(Space.tuple_of),
)


def _to_gym(space: Space) -> gym.Space:
    if space.kind == "box":
        return gym.spaces.Box(-2, 2, space.shape, np.float32)
    if space.kind == "discrete":
        return gym.spaces.Discrete(space.nvec[0], start=space.start[0])
    if space.kind == "multidiscrete":
        return gym.spaces.MultiDiscrete(list(space.nvec))
    if space.kind == "multibinary":
        return gym.spaces.MultiBinary(space.shape[0])
    if space.kind == "dict":
        return gym.spaces.Dict({k: _to_gym(v) for k, v in space.items})
    return gym.spaces.Tuple([_to_gym(v) for v in space.items])


@settings(max_examples=60, deadline=None)
@given(space=SPACES, n=st.integers(1, 4), action=st.sampled_from(["box", "discrete", "multi"]),
       seed=st.integers(0, 100))
def test_policy_act_batches_every_observation_space(space, n, action, seed):
    g = _to_gym(space)
    assert space_of(g) == space
    act_space = {"box": Space.box((2,), low=[-1, 0], high=[1, 4]),
                 "discrete": Space.discrete(4, start=2),
                 "multi": Space.multidiscrete([2, 3], start=[1, 0])}[action]
    w = np.random.default_rng(seed).normal(size=(feature_dim(space), 2))

    def act(params, stats, obs):  # a deterministic function of the flat features [N, D]
        batch = jax.tree_util.tree_leaves(obs)[0].shape[:1]
        z = flatten(space, obs, batch) @ params  # [N, 2]
        if act_space.kind == "box":
            return np.tanh(z)
        if act_space.kind == "discrete":
            return (np.abs(z[:, 0] * 7).astype(int) % 4)
        return np.stack([np.abs(z[:, 0] * 5).astype(int) % 2,
                         np.abs(z[:, 1] * 5).astype(int) % 3], axis=1)

    policy = Policy("test", w, None, EnvSpec(space, act_space), act)
    g.seed(seed)
    singles = [g.sample() for _ in range(n)]
    batch = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *singles)
    batched = policy.act(batch)
    assert len(batched) == n
    for i, obs in enumerate(singles):
        one = policy.act(obs)
        np.testing.assert_allclose(one, batched[i], rtol=1e-12)  # BLAS may round differently
        if act_space.kind == "box":
            assert one.shape == (2,) and np.all(one >= [-1, 0]) and np.all(one <= [1, 4])
        elif act_space.kind == "discrete":
            assert one.shape == () and 2 <= int(one) < 6
        else:
            assert one.shape == (2,) and 1 <= one[0] < 3 and 0 <= one[1] < 3
    assert zeros(space, (n,)) is not None
