"""The offline driver (issue 16): BC and TD3+BC learn from a Minari dataset; gradient steps are
the step unit; exact resume; the dataset's checksum guards a resume; clear errors for what
does not apply offline. Tiny networks, a 1,000-transition random Pendulum dataset."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

pytest.importorskip("minari")

from tandem import api  # noqa: E402
from tandem import datasets as dsets  # noqa: E402
from tandem.algos import get_algo  # noqa: E402
from tandem.algos.bc import BCConfig  # noqa: E402
from tandem.algos.cfpi import CFPIConfig, gaussian_step  # noqa: E402
from tandem.algos.csve import CSVEConfig  # noqa: E402
from tandem.algos.iql import IQLConfig, expectile_loss  # noqa: E402
from tandem.algos.sac_rnd import SACRNDConfig  # noqa: E402
from tandem.algos.td3 import TD3BCConfig, make_td3, td3bc_actor_loss  # noqa: E402
from tandem.cli import main  # noqa: E402
from tandem.core.spaces import EnvSpec  # noqa: E402
from tandem.core.types import Transition  # noqa: E402
from tandem.envs import datasets as ds  # noqa: E402
from tandem.errors import CheckpointError, ConfigError  # noqa: E402

SMALL = dict(hidden_sizes=(16, 16), batch_size=32, eval_episodes=1, log_every=50,
             checkpoint_every=100)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("minari")


@pytest.fixture(autouse=True)
def _root(root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))


@pytest.fixture(scope="module")
def dataset(root):
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    dsets.collect("pendulum/random-v0", 5, env="Pendulum-v1", seed=3)
    mp.undo()
    return "pendulum/random-v0"


def _state_arrays(run_dir):
    from tandem.run.checkpoint import latest_checkpoint, load_checkpoint
    _, arrays = load_checkpoint(latest_checkpoint(run_dir))
    return {k: v for k, v in arrays.items() if k.startswith("state/")}


# BC's case runs in the default suite; the four heavier ones (6-11 s each) with the slow tests
# in step 2 of scripts/test.sh, which keeps the default suite near its 10-minute budget
@pytest.mark.parametrize("cfg", [
    pytest.param(TD3BCConfig(**SMALL), marks=pytest.mark.slow), BCConfig(**SMALL),
    pytest.param(IQLConfig(**SMALL), marks=pytest.mark.slow),
    # RND pretraining ends at step 150: the resumed half crosses into SAC's phase
    pytest.param(SACRNDConfig(**SMALL, rnd_hidden=16, rnd_embedding=8, rnd_pretrain_steps=150),
                 marks=pytest.mark.slow),
    pytest.param(CFPIConfig(**SMALL, n_components=3), marks=pytest.mark.slow),
    # the dynamics ensemble is fitted for 150 steps: the resumed half starts in that stage
    pytest.param(CSVEConfig(**SMALL, model_hidden=(16, 16), n_models=3, model_steps=150),
                 marks=pytest.mark.slow),
], ids=["td3bc", "bc", "iql", "sac-rnd", "cfpi", "csve"])
def test_offline_training_resumes_exactly_and_compiles_once(cfg, dataset, tmp_path, caplog):
    whole = api.train(cfg, steps=300, dataset=dataset, out=tmp_path / "whole", progress=False)
    assert whole.summary["step_unit"] == "gradient_steps" and whole.summary["steps"] == 300
    assert whole.summary["dataset"] == dataset
    part = api.train(cfg, steps=100, dataset=dataset, out=tmp_path / "part", progress=False)
    # 100 steps do not reach the end of CSVE's model stage or SAC-RND's RND stage (150): said
    assert ("the policy does not train" in caplog.text) == (cfg.algo in ("csve", "sac-rnd"))
    api.resume(part.dir, steps=200, progress=False)
    # one compilation for three drivers and whatever chunk lengths the session asked for
    assert get_algo(cfg.algo).build(cfg, whole.policy.spec).traces["offline_train"] == 1
    a, b = _state_arrays(whole.dir), _state_arrays(part.dir)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # the loaded policy is the trained one, dataset normalisation included
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_allclose(api.load(whole.dir).act(obs), whole.policy.act(obs), atol=1e-6)
    # TD3+BC, BC, CFPI and CSVE normalise states by the dataset's statistics, IQL and CFPI
    # scale rewards, SAC-RND normalises its RND's inputs only
    assert (whole.policy.obs_stats is None) == (cfg.algo in ("iql", "sac-rnd"))
    record = json.loads((whole.dir / "config.json").read_text())["preprocessing"]
    returns = ds.load_dataset(dataset).episode_returns
    assert record["reward_scale"] == (pytest.approx(1000 / (returns.max() - returns.min()))
                                      if cfg.algo in ("iql", "cfpi") else 1.0)
    rows = (whole.dir / "metrics.csv").read_text()
    assert ("train/bc_loss" if cfg.algo == "bc" else "train/critic_loss") in rows


def test_td3bc_actor_loss_is_the_papers():
    cfg = TD3BCConfig(hidden_sizes=(8,), bc_alpha=2.5)
    spec = EnvSpec.box(3, 2)
    fns = make_td3(cfg, spec)
    state = fns.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    batch = Transition(rng.normal(size=(5, 3)).astype(np.float32),
                       rng.uniform(-1, 1, (5, 2)).astype(np.float32), np.zeros(5, np.float32),
                       rng.normal(size=(5, 3)).astype(np.float32), np.zeros(5, np.float32))
    loss, extra = td3bc_actor_loss(state.actor_params, state.critic_params, batch, fns.nets, cfg)
    pi = np.asarray(fns.nets.actor.apply(state.actor_params, batch.obs), np.float64)
    q1 = np.asarray(fns.nets.critic.apply(state.critic_params, batch.obs, pi.astype(np.float32))
                    [0], np.float64)
    bc = np.mean((pi - batch.action) ** 2)  # over the batch and the action dims
    want = -2.5 / np.abs(q1).mean() * q1.mean() + bc
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert float(extra["bc_loss"]) == pytest.approx(bc, rel=1e-5)
    # the Q term's weight is a constant: the gradient reaches the actor only
    g = jax.grad(lambda c: td3bc_actor_loss(state.actor_params, c, batch, fns.nets, cfg)[0])(
        state.critic_params)
    assert all(float(np.abs(x).max()) == 0.0 for x in jax.tree_util.tree_leaves(g))


def test_iql_expectile_loss_on_worked_numbers():
    # tau = 0.7: Q - V = 2 weighs 0.7 * 4 = 2.8, Q - V = -2 weighs 0.3 * 4 = 1.2, 0 gives 0
    got = expectile_loss(np.array([2.0, -2.0, 0.0, 0.5]), 0.7)
    np.testing.assert_allclose(got, [2.8, 1.2, 0.0, 0.7 * 0.25], rtol=1e-6)
    # minimising it over a constant V gives the tau-expectile: for samples {0, 1}, tau = 0.7,
    # 0.7 (1 - v) = 0.3 v -> v = 0.7 (the mean, 0.5, at tau = 0.5)
    vs = np.linspace(0, 1, 1001)
    for tau, want in ((0.7, 0.7), (0.5, 0.5), (0.9, 0.9)):
        loss = [float(expectile_loss(np.array([0.0, 1.0]) - v, tau).sum()) for v in vs]
        assert vs[int(np.argmin(loss))] == pytest.approx(want, abs=1e-3)


def test_cfpi_closed_form_is_the_argmax_of_its_taylor_objective():
    # max g^T (a - mu) over the ellipse (a - mu)^T diag(var)^-1 (a - mu) <= 2 delta: the
    # maximum of a linear function lies on the boundary; search it on a fine polar grid
    mu, var, g, delta = np.array([0.1, -0.2]), np.array([0.04, 0.25]), np.array([1.5, -0.7]), 0.8
    got = np.asarray(gaussian_step(mu, var, g, np.float32(delta)))
    theta = np.linspace(0, 2 * np.pi, 200_001)
    ring = mu + np.sqrt(2 * delta) * np.sqrt(var) * np.stack([np.cos(theta), np.sin(theta)], 1)
    best = ring[np.argmax(ring @ g)]
    np.testing.assert_allclose(got, best, atol=1e-4)
    assert (got - mu) @ ((got - mu) / var) == pytest.approx(2 * delta, rel=1e-5)  # on the edge
    # a larger trust region moves further along the same direction
    far = np.asarray(gaussian_step(mu, var, g, np.float32(2 * delta)))
    np.testing.assert_allclose(far - mu, np.sqrt(2) * (got - mu), rtol=1e-5)


def test_resume_on_changed_data_is_refused(dataset, tmp_path, capsys):
    run = api.train(BCConfig(**SMALL), steps=100, dataset=dataset, out=tmp_path / "run",
                    progress=False)
    copy = tmp_path / "copy-v0"
    shutil.copytree(ds.dataset_folder(dataset), copy)
    run_record = json.loads((run.dir / "config.json").read_text())
    run_record["dataset"].update(name=str(copy), path=str(copy / "data"))
    (run.dir / "config.json").write_text(json.dumps(run_record))
    api.resume(run.dir, steps=50, progress=False)  # the same data elsewhere: fine
    with open(copy / "data" / "main_data.hdf5", "r+b") as fh:  # one value changed
        fh.seek(-64, 2)
        byte = fh.read(1)
        fh.seek(-64, 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CheckpointError, match="the data changed"):
        api.resume(run.dir, steps=50, progress=False)
    assert main(["resume", str(run.dir), "--steps", "50"]) == 2
    assert "the data changed" in capsys.readouterr().err


def test_a_dataset_without_an_env_trains_with_evaluation_off(dataset, tmp_path):
    data = ds.load_dataset(dataset)
    cols = dict(obs=data.obs, action=data.action, reward=data.reward,
                terminated=data.terminated.astype(np.int8),
                truncated=data.truncated.astype(np.int8), next_obs=data.next_obs)
    np.savez(tmp_path / "logs.npz", **cols)
    spaces = json.dumps({"observation": {"shape": [3]}, "action": {"low": [-2], "high": [2]}})
    dsets.import_logs(tmp_path / "logs.npz", "plant/logs-v0", spaces=spaces)
    run = api.train(TD3BCConfig(**SMALL, eval_every=50), steps=100, dataset="plant/logs-v0",
                    out=tmp_path / "run", progress=False)
    assert run.summary["eval/return_mean"] is None and run.summary["eval/episodes"] == 0
    assert run.env_id is None


def test_evaluation_reports_normalised_scores(dataset, tmp_path):
    expert = api.train(BCConfig(**SMALL), steps=50, dataset=dataset, out=tmp_path / "expert",
                       progress=False)
    dsets.collect("pendulum/scored-v0", 2, run_dir=expert.dir, expert=expert.dir)
    lo, hi = ds.load_dataset("pendulum/scored-v0").references["local"]
    run = api.train(BCConfig(**SMALL, eval_every=50), steps=100, dataset="pendulum/scored-v0",
                    out=tmp_path / "run", progress=False)
    r = run.summary["eval/return_mean"]
    assert run.summary["eval/normalized_score_local"] == pytest.approx(100 * (r - lo) / (hi - lo))
    assert "eval/normalized_score_local" in (run.dir / "metrics.csv").read_text()
    again = api.evaluate(run.dir, episodes=1)
    assert again["eval/normalized_score_local"] == pytest.approx(
        100 * (again["eval/return_mean"] - lo) / (hi - lo))
    from tandem.report import _fmt, write_report
    page = write_report([run.dir], tmp_path / "report", video=False).read_text()
    assert "normalised score" in page
    assert f"local {_fmt(run.summary['eval/normalized_score_local'])}" in page


def test_offline_configuration_errors(dataset, tmp_path, capsys):
    from tandem import SACConfig
    with pytest.raises(ConfigError, match="learns from a dataset"):
        api.train(TD3BCConfig(**SMALL), steps=10)
    with pytest.raises(ConfigError, match="sac learns online"):
        api.train(SACConfig(), steps=10, dataset=dataset)
    with pytest.raises(ConfigError, match="buffer_size, learning_starts do not apply"):
        api.train(TD3BCConfig(buffer_size=1000, learning_starts=5), steps=10, dataset=dataset)
    with pytest.raises(ConfigError, match="evaluates in the dataset's own env"):
        api.train(TD3BCConfig(), "Pendulum-v1", steps=10, dataset=dataset)
    assert main(["train", "td3bc", "--dataset", "pendulum/nothing-v0", "--steps", "10",
                 "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no dataset 'pendulum/nothing-v0'" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
    assert main(["train", "bc", "--dataset", dataset, "--steps", "60", "--hidden-sizes", "8",
                 "--out", str(tmp_path / "cli")]) == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["steps"] == 60 and summary["step_unit"] == "gradient_steps"


@pytest.mark.learning
def test_offline_algorithms_beat_bc_on_pendulum_medium_replay(tmp_path, monkeypatch):
    """D4RL's medium-replay recipe at Pendulum's scale: the replay buffer of a SAC run that
    learned in 5,000 steps (its first episodes random, its last near -200). Cloning that mix
    stays near the random policy; an offline RL method should pick out the good actions.
    Measured (docs/offline.md), normalised on seeds 0 / 1: BC 6 / 9, TD3+BC 19 / 18, IQL
    97 / 98 at 5,000 gradient steps, SAC-RND 99.5 / 98.5 at 4,000, CFPI 91 / 94 at 3,000,
    CSVE 97.6 / 95.8 at 7,000 (1,000 of them fitting its model, of 2 x 200 layers).

    Then offline to online: SAC starts from the SAC-RND policy (--init) with its dataset half
    of every batch; its first evaluation, 500 env steps in, has not collapsed: it is no more
    than 10% below the offline policy's return on the same evaluation episodes."""
    from tandem import SACConfig
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    online = api.train(SACConfig(checkpoint_every=0), "Pendulum-v1", steps=5000,
                       out=tmp_path / "sac", progress=False)
    dsets.from_run(online.dir, "pendulum/medium-replay-v0", expert=online.dir)
    scores: dict[str, list[float]] = {}
    runs = {}
    # SAC-RND with 2 x 256 networks and batch 256 instead of its 3 x 256 and 1024 (4x cheaper
    # per step on a CPU); 1,000 RND steps, then 3,000 SAC steps. CSVE's dynamics members with
    # 2 hidden layers of 200 instead of 4 (Pendulum's dynamics are simple)
    rnd = SACRNDConfig(batch_size=256, hidden_sizes=(256, 256))
    csve = CSVEConfig(model_steps=1000, model_hidden=(200, 200))
    for cfg, steps in ((BCConfig(), 5000), (TD3BCConfig(), 5000), (IQLConfig(), 5000),
                       (rnd, 4000), (CFPIConfig(), 3000), (csve, 7000)):
        for seed in (0, 1):
            run = api.train(cfg.replace(eval_every=0, checkpoint_every=0), steps=steps,
                            seed=seed, dataset="pendulum/medium-replay-v0",
                            out=tmp_path / f"{cfg.algo}{seed}", progress=False)
            scores.setdefault(cfg.algo, []).append(run.summary["eval/normalized_score_local"])
            runs[cfg.algo, seed] = run
    for algo in ("td3bc", "iql", "sac-rnd", "cfpi", "csve"):  # seed by seed, clearly on average
        assert all(s > b for s, b in zip(scores[algo], scores["bc"])), scores
        assert np.mean(scores[algo]) > np.mean(scores["bc"]) + 5, scores
    assert min(scores["iql"]) >= 70 and min(scores["sac-rnd"]) >= 70, scores
    assert min(scores["cfpi"]) >= 70 and min(scores["csve"]) >= 70, scores

    offline = runs["sac-rnd", 0]
    warm = api.train(SACConfig(eval_every=500, checkpoint_every=0), steps=500, seed=0,
                     init=offline.dir, out=tmp_path / "online", progress=False)
    before, after = offline.summary["eval/return_mean"], warm.summary["eval/return_mean"]
    assert after >= before - 0.1 * abs(before), (before, after)


@pytest.mark.slow  # 8 s: 1,000 RND steps at the paper's sizes
def test_sac_rnd_penalty_is_small_on_fitted_data_and_grows_off_it():
    """The FiLM/bilinear RND, fitted to (s, a) pairs where each state has one action,
    gives a bonus near its floor there and a larger one the further the action moves off."""
    from tandem.algos.sac_rnd import _rnd_step, make_sac_rnd, rnd_bonus
    rng = np.random.default_rng(0)
    s = rng.normal(size=(4096, 3)).astype(np.float32)
    a = np.tanh(s @ np.array([[1.0], [-0.5], [0.8]], np.float32)).astype(np.float32)
    fns = make_sac_rnd(SACRNDConfig(), EnvSpec.box(3, 1))  # the paper's RND sizes
    data = Transition(s, a, np.zeros(4096, np.float32), s, np.zeros(4096, np.float32))
    rnd = fns.offline_init(fns.init(jax.random.PRNGKey(0)), data).rnd
    step = jax.jit(lambda r, b: _rnd_step(r, b, fns.nets))
    for _ in range(1000):
        idx = rng.integers(0, 4096, 256)
        rnd, _ = step(rnd, Transition(s[idx], a[idx], None, None, None))
    probe = s[:1024]
    away = -np.sign(a[:1024])  # moving an action by d this way keeps it in [-1, 1]
    bonus = [float(rnd_bonus(fns.nets, rnd, probe, a[:1024] + d * away).mean())
             for d in (0.0, 0.25, 0.5, 1.0)]
    assert bonus == sorted(bonus), bonus          # grows with the distance from the data
    assert bonus[-1] > 2.5 * bonus[0], bonus      # several times the on-data floor (3.5x)


def test_dynamics_ensemble_learns_a_linear_system_and_knows_where_it_has_not_seen_data():
    """CSVE's model: fitted on s' = s + 0.1 a, r = -s_0^2 for states in [-1, 1], its mean
    prediction is close there, and its members disagree more far outside that range."""
    import optax
    from tandem.core import dynamics
    rng = np.random.default_rng(0)
    s = rng.uniform(-1, 1, (4096, 2)).astype(np.float32)
    a = rng.uniform(-1, 1, (4096, 1)).astype(np.float32)
    nxt, r = s + 0.1 * a, -s[:, 0] ** 2
    model = dynamics.DynamicsEnsemble((32, 32), 3, n=4)
    stats = dynamics.model_stats(s, a, nxt, r)
    params = model.init(jax.random.PRNGKey(0), np.zeros((1, 3), np.float32))
    opt = optax.adam(3e-3)
    opt_state = opt.init(params)

    from tandem.core.optim import gradient_step
    step = jax.jit(lambda p, o, *b: gradient_step(p, o, opt, dynamics.model_loss, model, stats,
                                                  *b))
    for _ in range(1500):
        idx = rng.integers(0, 4096, 256)
        params, opt_state, _ = step(params, opt_state, s[idx], a[idx], nxt[idx], r[idx])
    pred_s, pred_r = dynamics.predict(params, model, stats, s[:512], a[:512],
                                      jax.random.PRNGKey(1), sample=False)
    assert float(np.abs(pred_s - nxt[:512]).mean()) < 0.02
    assert float(np.abs(pred_r - r[:512]).mean()) < 0.05

    def spread(states):  # disagreement of the members' means
        x = (np.concatenate([states, a[:512]], 1) - stats.in_mean) / stats.in_std
        mean, _ = model.apply(params, x)
        return float(mean.std(axis=0).mean())
    assert spread(s[:512] * 4.0) > 3 * spread(s[:512])


@pytest.mark.slow  # 25-35 s: five short SAC runs, each compiled
def test_sac_starts_online_from_an_offline_run(dataset, tmp_path, capsys):
    """--init: SAC starts from SAC-RND's weights (its networks taken from the source run), its
    dataset half of every batch; a resumed run reloads the dataset and matches an
    uninterrupted one; what cannot start what is refused in one line."""
    from tandem import PPOConfig, SACConfig
    src = api.train(SACRNDConfig(**SMALL, rnd_hidden=16, rnd_embedding=8, rnd_pretrain_steps=50),
                    steps=100, dataset=dataset, out=tmp_path / "rnd", progress=False)
    # before learning starts the online policy is the offline one
    still = api.train(SACConfig(eval_episodes=1, learning_starts=50), steps=5, init=src.dir,
                      out=tmp_path / "still", progress=False)
    obs = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_allclose(api.load(still.dir).act(obs), src.policy.act(obs), atol=1e-6)
    record = json.loads((still.dir / "config.json").read_text())
    assert record["env"] == "Pendulum-v1" and record["init"]["algo"] == "sac-rnd"
    assert record["init"]["dataset"]["checksum"] == ds.load_dataset(dataset).checksum
    assert record["config"]["hidden_sizes"] == [16, 16] and record["config"]["critic_layer_norm"]
    # exact resume of a warm-started run (learning_starts 0: batches mix dataset and new data)
    cfg = SACConfig(batch_size=32, eval_episodes=1, checkpoint_every=100)
    whole = api.train(cfg, steps=150, init=src.dir, out=tmp_path / "whole", progress=False)
    part = api.train(cfg, steps=100, init=src.dir, out=tmp_path / "part", progress=False)
    api.resume(part.dir, steps=50, progress=False)
    a, b = _state_arrays(whole.dir), _state_arrays(part.dir)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    with pytest.raises(ConfigError, match="networks differ"):
        api.train(SACConfig(hidden_sizes=(32, 32)), steps=5, init=src.dir, progress=False,
                  out=tmp_path / "bad1")
    bc = api.train(BCConfig(**SMALL), steps=10, dataset=dataset, out=tmp_path / "bc",
                   progress=False)
    with pytest.raises(ConfigError, match="sac can start from a sac or sac-rnd run"):
        api.train(SACConfig(), steps=5, init=bc.dir, progress=False, out=tmp_path / "bad2")
    with pytest.raises(ConfigError, match="not ppo"):
        api.train(PPOConfig(), steps=5, init=src.dir, progress=False, out=tmp_path / "bad3")
    assert main(["train", "sac", "--init", str(tmp_path / "nothing"), "--steps", "5",
                 "--out", str(tmp_path / "bad4")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "bad4").exists()
