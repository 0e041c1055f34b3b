"""Orthogonal init: jax's draw, and never a batched LAPACK QR under vmap.

jaxlib splits a batched QR over XLA's intra-op thread pool and waits for the pieces from
inside that pool; two such QRs in one program on a 2-thread pool wait on each other forever
(a CI hang of the compiled PPO learning test; gdb on it hung here showed both pool threads in
jax::ParallelBatchMap under lapack_sgeqrf_ffi). The hang needs a thread race, so these tests
check its precondition instead: no program tandem vmaps contains a batched LAPACK call.
"""

import re

import jax
import numpy as np
import pytest

from tandem import PPOConfig, SACConfig
from tandem.compiled.driver import Program as _Program, _keys
from tandem.core.nets import orthogonal
from tandem.envs.jaxenv import make_jax_env

LAPACK_CALL = re.compile(r"custom_call @(lapack_\w+).*?num_batch_dims = \"(\d+)\"")


def lapack_calls(lowered) -> list[tuple[str, int]]:
    return [(name, int(n)) for name, n in LAPACK_CALL.findall(lowered.as_text())]


@pytest.mark.parametrize("shape", [(4, 64), (64, 64), (64, 2), (3, 5, 7)])
@pytest.mark.parametrize("scale", [1.0, 2.0 ** 0.5, 0.01])
def test_orthogonal_is_jax_draw_and_orthogonal(shape, scale):
    key = jax.random.PRNGKey(7)
    w = np.asarray(orthogonal(scale)(key, shape))
    np.testing.assert_array_equal(w, np.asarray(jax.nn.initializers.orthogonal(scale)(key, shape)))
    m = w.reshape(-1, shape[-1])
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, scale ** 2 * np.eye(len(gram)), atol=1e-5 * max(1, scale ** 2))


def test_vmapped_orthogonal_loops_over_the_batch_with_the_same_numbers():
    keys = jax.random.split(jax.random.PRNGKey(0), 6).reshape(2, 3, 2)
    ours = jax.jit(jax.vmap(jax.vmap(lambda k: orthogonal()(k, (64, 64)))))
    theirs = jax.vmap(jax.vmap(lambda k: jax.nn.initializers.orthogonal()(k, (64, 64))))
    np.testing.assert_array_equal(np.asarray(ours(keys)), np.asarray(theirs(keys)))
    calls = lapack_calls(ours.lower(keys))
    assert calls and all(n == 0 for _, n in calls), calls
    # the detector sees the batched call jax's own initializer makes under vmap
    assert ("lapack_sgeqrf_ffi", 2) in lapack_calls(jax.jit(theirs).lower(keys))


@pytest.mark.parametrize("cfg,env_id", [
    (PPOConfig(n_envs=2, n_steps=8, hidden_sizes=(8, 8)), "gymnax:CartPole-v1"),
    (SACConfig(hidden_sizes=(8, 8), network="simbav2", n_critics=2, batch_size=8,
               learning_starts=8, buffer_size=64), "gymnax:Pendulum-v1"),
])
def test_compiled_init_of_vmapped_seeds_has_no_batched_lapack_call(cfg, env_id):
    # the programs of the hang: PPO's orthogonal init, and SimbaV2's inside a vmapped Q
    # ensemble, both under the vmap over seeds of the compiled path
    prog = _Program(cfg, make_jax_env(env_id), 2)
    calls = lapack_calls(prog.init.lower(_keys([0, 1])))
    assert calls, "expected the orthogonal init's QR in the program"
    assert all(n == 0 for _, n in calls), calls


def test_off_policy_layers_start_as_pytorch_linear():
    # kernels and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch.nn.Linear (SB3)
    from tandem.core.nets import MLP
    params = MLP((256, 256), 12).init(jax.random.PRNGKey(0), np.zeros((1, 17), np.float32))
    for name, fan_in in (("Dense_0", 17), ("Dense_1", 256), ("Dense_2", 256)):
        for leaf in ("kernel", "bias"):
            x = np.asarray(params["params"][name][leaf])
            bound = 1 / np.sqrt(fan_in)
            assert np.abs(x).max() <= bound, (name, leaf)
            if x.size >= 200:  # enough draws to see the uniform's spread
                assert np.abs(x).max() > 0.95 * bound, (name, leaf)
                assert abs(x.std() - bound / np.sqrt(3)) < 0.1 * bound, (name, leaf)


def test_sacs_initial_policy_is_not_saturated():
    # issue 22: with Flax's default init 80-87% of HalfCheetah's action dimensions started
    # with |tanh(mean)| > 0.5; PyTorch's init gives SB3's 11-25%
    from tandem import SACConfig
    from tandem.algos.sac import make_sac
    from tandem.core.spaces import EnvSpec
    fns = make_sac(SACConfig(), EnvSpec.box(17, 6))
    obs = np.random.default_rng(0).normal(0, 2, (2000, 17)).astype(np.float32)
    for seed in range(3):
        state = fns.init(jax.random.PRNGKey(seed))
        mean = np.asarray(fns.nets.actor.apply(state.actor_params, obs).loc)
        assert (np.abs(np.tanh(mean)) > 0.5).mean() < 0.3
