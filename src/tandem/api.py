"""The public API: train, resume, load, evaluate.

Each call checks its arguments, resolves the env, picks the driver for the algorithm and the
env (``_driver``), and hands it to the one session (``tandem.run.session``); nothing here
loops. Drivers:

| env                         | algorithm                    | driver                          |
|-----------------------------|------------------------------|---------------------------------|
| JAX-native (gymnax, Brax)   | sac, droq, td3, ddpg, ppo, a2c | ``compiled.CompiledDriver``   |
| Gymnasium                   | off-policy, ``workers=0``    | ``host.OffPolicyDriver``        |
| Gymnasium                   | off-policy, ``workers=W``    | ``distributed.WorkerOffPolicyDriver`` |
| Gymnasium                   | ppo, a2c                     | ``host.OnPolicyDriver``         |
| Gymnasium                   | impala                       | ``distributed.IMPALADriver``    |
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from tandem.algos import AlgoSpec, algo_names, algos_for_action_space, get_algo
from tandem.compiled.driver import CompiledDriver
from tandem.config import Config
from tandem.core.evaluate import evaluate_policy
from tandem.core.normalize import ObsRMS
from tandem.core.offpolicy import ReplayLearner
from tandem.core.pytree import restore_pytree
from tandem.core.spaces import EnvSpec
from tandem.core.types import ObsStats
from tandem.distributed.impala import IMPALADriver
from tandem.distributed.offpolicy import WorkerOffPolicyDriver
from tandem.envs import check as env_check
from tandem.envs.datasets import Dataset, load_dataset, normalized_score
from tandem.envs.gym import GymEnv, action_space_of, make_env, redirect_mujoco_log, space_of
from tandem.envs.perturb import PERTURBATIONS, perturb
from tandem.envs.resolve import EnvSource, resolve_env
from tandem.errors import CheckpointError, ConfigError, DatasetError, EnvError, ExportError
from tandem.export import FORMATS, config_hash, policy_model, write_model, write_npz
from tandem.export.jaxpr_onnx import require_onnx
from tandem.host.offpolicy import OffPolicyDriver
from tandem.host.onpolicy import OnPolicyDriver
from tandem.offline import warmstart
from tandem.offline.driver import OfflineDriver, returns_reward_scale
from tandem.run import folder as rf
from tandem.run.checkpoint import MALFORMED, latest_checkpoint, load_checkpoint
from tandem.run.results import Policy, Run, Sweep
from tandem.run.session import Session, each_seed

log = logging.getLogger("tandem")


# ============================================================================ drivers
def _gym_driver(algo: AlgoSpec, cfg: Config, genv: GymEnv, seed: int, run_dir: Path | None,
                init_state: Any = None, prior: Any = None, fns: Any = None):
    """The driver of a Gymnasium run (see the table in the module docstring); ``init_state``
    and ``prior`` start an off-policy run from another run (``--init``)."""
    eval_env = genv.make() if genv.source.remakeable else genv.env
    log_dir = str(run_dir) if run_dir is not None else None
    if algo.driver == "impala":
        return IMPALADriver(cfg, genv, algo.build(cfg, genv.spec), seed, algo.name, eval_env,
                            log_dir)
    if algo.driver == "onpolicy":
        if cfg.workers:
            raise ConfigError(f"{algo.name} collects with its own vector envs (--envs); Ray "
                              "workers are for impala and the off-policy algorithms")
        return OnPolicyDriver(cfg, genv, algo.build(cfg, genv.spec), seed, algo.name,
                              eval_env, log_dir)
    if cfg.workers:
        return WorkerOffPolicyDriver(cfg, genv, algo.build(cfg, genv.spec), seed, algo.name,
                                     eval_env, log_dir)
    return OffPolicyDriver(cfg, genv, fns or algo.build(cfg, genv.spec), seed, algo.name,
                           eval_env, init_state, prior)


def _make_env(source: EnvSource | Any, algo: AlgoSpec, env_kwargs: dict | None = None
              ) -> GymEnv:
    return make_env(source, algo.name, algo.action_spaces, env_kwargs,
                    alternatives=algos_for_action_space)


def _check_cfg(cfg: Any) -> AlgoSpec:
    if not isinstance(cfg, Config):
        raise ConfigError(f"cfg must be a tandem config such as SACConfig(), got "
                          f"{type(cfg).__name__}")
    return get_algo(cfg.algo)


# ============================================================================ train
def train(cfg: Config, env: Any = None, steps: int = 50_000, seed: int = 0,
          out: str | Path | None = None, progress: bool | None = None,
          env_kwargs: dict | None = None, seeds: str | int | list[int] | None = None,
          on_eval: Callable | None = None, check_env: bool = True,
          dataset: str | Path | None = None, init: str | Path | None = None) -> Run | Sweep:
    """Train ``cfg``'s algorithm on ``env`` for ``steps`` env steps.

    ``env`` is a Gymnasium id (``module:Name`` imports the module; a Name that is not a
    registered id is the module's env factory) or instance (the host drivers), or a
    JAX-native id such as ``gymnax:Pendulum-v1`` / ``brax:halfcheetah`` (the whole loop
    compiled into one program). Writes a run folder (``out``, default
    ``runs/<algo>_<env>_seed<S>_<time>``) and returns the :class:`Run`, whose
    ``policy.act(obs)`` gives deployable actions. With ``seeds`` (a count, a range "0-9" or a
    list) several seeds train into one folder and a :class:`Sweep` is returned: vmapped as
    one program on a JAX-native env, one after another otherwise. A JAX-native env always
    returns a Sweep (of one seed when ``seeds`` is not given).

    With ``cfg.eval_every`` the policy is evaluated during training and
    ``on_eval(step, metrics)`` is called after each evaluation (an exception raised there,
    e.g. a tuner's prune, stops training after the row is logged).

    A Gymnasium env is first checked (``tandem.envs.check.check_env``: a few hundred random
    steps on a separate instance); ``check_env=False`` skips that.

    Offline algorithms (bc, td3bc, ...) learn from ``dataset`` (a Minari dataset id or
    folder) instead, for ``steps`` gradient steps, and evaluate in the dataset's env (``env``
    is not used; a dataset without an env trains with evaluation off).

    ``init`` (a run folder) starts an off-policy run from that run's weights: SAC from a
    SAC-RND (offline) or SAC run, TD3 from TD3. An offline source's dataset stays in the
    replay, half of every batch (``tandem.offline.warmstart``); ``env`` defaults to the
    source's.
    """
    algo = _check_cfg(cfg)
    rf.check_int("steps", steps, 1)
    rf.check_int("seed", seed, 0)
    seed_list = rf.parse_seeds(seeds, seed)
    if init is not None and (algo.driver == "offline" or dataset is not None):
        raise ConfigError("--init starts an online run from another run's weights; an offline "
                          "run starts from its dataset alone")
    if algo.driver == "offline" or dataset is not None:
        return _train_offline(cfg, algo, dataset, env, steps, seed, seed_list, out, progress,
                              on_eval)
    src_run = src_cfg = None
    if init is not None:
        if algo.driver != "offpolicy" or cfg.workers:
            raise ConfigError(f"--init starts an off-policy run on one Gymnasium env (sac, "
                              f"td3), not {cfg.algo}" + (" with Ray workers" if cfg.workers
                                                         else ""))
        src_run, src_cfg = warmstart.source_run(init, cfg.algo)
        cfg = warmstart.adopt(cfg, src_cfg)
        if env is None:
            if src_run.get("env") is None:
                raise ConfigError(f"--init: {init} records no env; give one (--env)")
            env, env_kwargs = src_run["env"], env_kwargs or src_run.get("env_kwargs") or None
    if env is None:
        raise ConfigError(f"{cfg.algo} trains online: give an env")
    source = resolve_env(env, env_kwargs)
    if init is not None and source.kind == "jax":
        raise ConfigError("--init starts a Gymnasium run; a JAX-native env runs compiled")
    if source.kind == "jax":
        return _train_compiled(cfg, algo, source, steps, seed_list or [seed], out, progress,
                               env_kwargs, on_eval)
    if seed_list is not None and len(seed_list) > 1:
        sweep_dir = Path(out) if out is not None else rf.default_out(cfg.algo, source.name,
                                                                     seed_list[0])
        runs, agg = each_seed(sweep_dir, seed_list, lambda s, folder, first: train(
            cfg, env, steps, s, folder, progress, env_kwargs, on_eval=on_eval,
            check_env=check_env and first, init=init))
        return Sweep(sweep_dir, cfg.algo, runs[0].env_id, seed_list,
                     [r.summary for r in runs], agg, [r.policy for r in runs])
    if seed_list is not None:
        seed = seed_list[0]
    genv = _make_env(source, algo)
    if cfg.eval_every and not source.remakeable:
        raise ConfigError("eval_every needs a second env instance for evaluation; this env was "
                          "passed as an unregistered instance: register it (gymnasium.register) "
                          "and pass its id, or set eval_every=0")
    run_dir = Path(out) if out is not None else rf.default_out(cfg.algo, source.name, seed)
    with rf.claimed(run_dir):
        redirect_mujoco_log(run_dir)  # MuJoCo's warnings go there, not to the working dir
        if check_env:
            for warning in env_check.check_env(env, env_kwargs, seed=seed):
                log.warning("check-env: %s", warning)
        warm = None
        if init is not None:
            fns = algo.build(cfg, genv.spec)
            warm = warmstart.load(init, src_run, src_cfg, cfg.algo, fns,
                                  ReplayLearner.keys(seed)[0])
            driver = _gym_driver(algo, cfg, genv, seed, run_dir, warm.state, warm.prior, fns)
        else:
            driver = _gym_driver(algo, cfg, genv, seed, run_dir)
    run = {"algo": cfg.algo, "env": source.name, "env_from_instance": source.kind == "instance",
           "env_kwargs": env_kwargs or {}, "seed": int(seed), "steps": int(steps),
           "config": cfg.to_dict(), "env_spec": genv.spec.to_json(),
           "driver": "ray" if cfg.workers else "host", "step_unit": driver.unit,
           "versions": rf.versions()}
    if warm is not None:
        run["init"] = warm.record
    rf.write_run(run_dir, run)
    driver.start()
    log.info("training %s on %s for %d steps (seed %d) -> %s%s", cfg.algo,
             source.name or "env", steps, seed, run_dir,
             f", starting from {init}" if init is not None else "")
    return _single(run_dir, run, driver, cfg, int(steps), progress, on_eval)


# ============================================================================ offline
# Online-only fields: set on an offline algorithm, they would silently do nothing.
_ONLINE_ONLY = ("buffer_size", "learning_starts", "train_freq", "gradient_steps",
                "worker_steps", "workers")


def _train_offline(cfg: Config, algo: AlgoSpec, dataset, env, steps: int, seed: int,
                   seed_list: list[int] | None, out, progress, on_eval) -> Run | Sweep:
    if algo.driver != "offline":
        offline = [n for n in algo_names() if get_algo(n).driver == "offline"]
        raise ConfigError(f"{cfg.algo} learns online; a dataset is for the offline algorithms "
                          f"({', '.join(offline)})")
    if dataset is None:
        raise ConfigError(f"{cfg.algo} learns from a dataset: give one (--dataset NAME, a "
                          "Minari id or folder; `tandem dataset --help` makes them)")
    if env is not None:
        raise ConfigError(f"{cfg.algo} evaluates in the dataset's own env; drop the env "
                          "argument (--env)")
    defaults = type(cfg)()
    changed = [k for k in _ONLINE_ONLY if k in cfg.field_names()
               and getattr(cfg, k) != getattr(defaults, k)]
    if changed:
        raise ConfigError(f"{', '.join(changed)} do not apply to offline training of "
                          f"{cfg.algo} (it samples the whole dataset; --steps counts gradient "
                          "steps)")
    data = load_dataset(dataset)
    stage = cfg.stage_steps_field  # e.g. CSVE's model, SAC-RND's RND, fitted first
    if stage is not None and getattr(cfg, stage) >= steps:
        log.warning("%s=%d: all %d steps go to %s's first stage, the policy does not train "
                    "(give --steps above it, or lower it; a resume can add steps)", stage,
                    getattr(cfg, stage), steps, cfg.algo)
    if seed_list is not None and len(seed_list) > 1:
        sweep_dir = Path(out) if out is not None else rf.default_out(
            cfg.algo, data.env_id or "dataset", seed_list[0])
        runs, agg = each_seed(sweep_dir, seed_list, lambda s, folder, first: train(
            cfg, None, steps, s, folder, progress, on_eval=on_eval, dataset=dataset))
        return Sweep(sweep_dir, cfg.algo, runs[0].env_id, seed_list,
                     [r.summary for r in runs], agg, [r.policy for r in runs])
    if seed_list is not None:
        seed = seed_list[0]
    spec = offline_spec(data, algo)
    eval_env = _dataset_env(data)
    if eval_env is None and (cfg.eval_every or cfg.eval_episodes):
        log.warning("dataset '%s' has no env tandem can make here: training with evaluation "
                    "off", data.name)
        cfg = cfg.replace(eval_every=0, eval_episodes=0)
    run_dir = Path(out) if out is not None else rf.default_out(cfg.algo, data.env_id or
                                                               "dataset", seed)
    with rf.claimed(run_dir):
        redirect_mujoco_log(run_dir)
        fns = algo.build(cfg, spec)
        scale = returns_reward_scale(data) if getattr(cfg, "reward_scale", "none") == \
            "returns" else 1.0
        driver = OfflineDriver(cfg, data, fns, seed, cfg.algo, eval_env, scale)
    run = {"algo": cfg.algo, "env": data.env_id, "env_kwargs": data.env_kwargs,
           "dataset": {"name": data.name, "path": str(data.path), "checksum": data.checksum,
                       "transitions": data.size, "episodes": int(data.episode_returns.size),
                       "references": {k: list(v) for k, v in data.references.items()}},
           "preprocessing": {"normalize_obs": driver.obs_stats is not None,
                             "reward_scale": driver.reward_scale},
           "seed": int(seed), "steps": int(steps), "config": cfg.to_dict(),
           "env_spec": spec.to_json(), "driver": "offline", "step_unit": driver.unit,
           "versions": rf.versions()}
    rf.write_run(run_dir, run)
    driver.start()
    log.info("training %s on dataset %s (%d transitions) for %d gradient steps (seed %d) -> %s",
             cfg.algo, data.name, data.size, steps, seed, run_dir)
    return _single(run_dir, run, driver, cfg, int(steps), progress, on_eval)


def offline_spec(data: Dataset, algo: AlgoSpec) -> EnvSpec:
    """The EnvSpec of a dataset: its spaces, checked as an env's would be for ``algo``."""
    try:
        obs = space_of(data.observation_space)
        action = action_space_of(data.action_space, data.name, algo.name, algo.action_spaces)
    except EnvError as exc:
        raise DatasetError(f"dataset '{data.name}': {exc}") from None
    return EnvSpec(obs, action, data.env_id, data.max_episode_steps)


def _dataset_env(data: Dataset):
    """The dataset's env for evaluation, or None where it cannot be made here."""
    if data.env_id is None:
        return None
    try:
        return data.make_env()
    except (EnvError, DatasetError, ImportError) as exc:
        log.warning("dataset '%s': cannot make its env %s (%s)", data.name, data.env_id, exc)
        return None


def _offline_driver(run: dict, cfg: Config, run_dir: Path) -> OfflineDriver:
    """A resumed offline run's driver, on its dataset (found by name, then by path)."""
    rec = run["dataset"]
    try:
        data = load_dataset(rec["name"])
    except DatasetError:
        if not Path(rec.get("path", "")).is_dir():
            raise
        data = load_dataset(rec["path"])
    algo = get_algo(run["algo"])
    if offline_spec(data, algo) != _spec_of(run, run_dir):
        raise CheckpointError(f"dataset '{data.name}' does not have the spaces {run_dir} was "
                              "trained with")
    fns = algo.build(cfg, _spec_of(run, run_dir))
    eval_env = _dataset_env(data) if cfg.eval_episodes else None
    return OfflineDriver(cfg, data, fns, int(run["seed"]), run["algo"], eval_env,
                         float(run.get("preprocessing", {}).get("reward_scale", 1.0)))


def _single(run_dir: Path, run: dict, driver, cfg: Config, until: int, progress, on_eval,
            resume_step: int | None = None, restored_meta: dict | None = None) -> Run:
    summaries, _ = Session(run_dir, run, driver, cfg.settings, until, progress=progress,
                           on_eval=on_eval, resume_step=resume_step,
                           restored_meta=restored_meta).run()
    return Run(run_dir, cfg.algo, run["env"], driver.seeds[0], cfg, summaries[0], driver.state,
               driver.policy())


def _train_compiled(cfg: Config, algo: AlgoSpec, source: EnvSource, steps: int,
                    seeds: list[int], out, progress, env_kwargs, on_eval) -> Sweep:
    if algo.driver == "impala" or cfg.workers:
        raise ConfigError(f"{cfg.algo} with Ray workers steps Gymnasium envs; a JAX-native env "
                          "runs as one compiled program (drop --workers, or use ppo / sac on it)")
    driver = CompiledDriver(cfg, source.instance or source.name, seeds, env_kwargs)
    run_dir = Path(out) if out is not None else rf.default_out(cfg.algo, driver.env.env_id,
                                                               seeds[0])
    rf.claim(run_dir)
    # the replay buffer is preallocated per seed; fixed so a resume can train longer
    run = {"algo": cfg.algo, "env": driver.env.env_id, "path": "compiled", "driver": "compiled",
           "seeds": seeds, "env_kwargs": env_kwargs or {}, "seed": seeds[0],
           "steps": int(steps), "capacity": getattr(cfg, "buffer_size", None),
           "config": cfg.to_dict(), "env_spec": driver.env.spec.to_json(),
           "step_unit": driver.unit, "versions": rf.versions()}
    rf.write_run(run_dir, run)
    driver.start()
    log.info("training %s on %s for %d steps, seeds %s, as one compiled program -> %s",
             cfg.algo, driver.env.env_id, steps, seeds, run_dir)
    return _compiled(run_dir, run, driver, cfg, int(steps), progress, on_eval)


def _compiled(run_dir: Path, run: dict, driver: CompiledDriver, cfg: Config, until: int,
              progress, on_eval, resume_step: int | None = None,
              restored_meta: dict | None = None) -> Sweep:
    summaries, agg = Session(run_dir, run, driver, cfg.settings, until, progress=progress,
                             on_eval=on_eval, resume_step=resume_step,
                             restored_meta=restored_meta).run()
    return Sweep(run_dir, cfg.algo, run["env"], list(driver.seeds), summaries, agg,
                 [driver.policy(i) for i in range(len(driver.seeds))], driver.state)


# ============================================================================ resume
def _config_from(run: dict) -> Config:
    try:
        cls = get_algo(run["algo"]).config_cls
        return cls.from_dict({**cls.run_folder_defaults, **run["config"]})
    except ConfigError as exc:
        raise CheckpointError(f"run config is invalid for this tandem version: {exc}") from None


def _spec_of(run: dict, run_dir: Path) -> EnvSpec:
    try:
        return EnvSpec.from_json(run["env_spec"])
    except MALFORMED as exc:
        raise CheckpointError(f"'{run_dir}/config.json' has a malformed env_spec ({exc!r})") \
            from None


def _env_for_run(run: dict, run_dir: Path, env: Any = None,
                 env_kwargs: dict | None = None) -> GymEnv:
    """The run's env (or ``env``), checked to have the spaces the run was trained with."""
    if env is None:
        if run.get("env_from_instance") and run.get("env") is None:
            raise EnvError("this run was trained on an unregistered env instance; pass the env "
                           "(Python: env=...) to continue or evaluate it")
        env = run["env"]
    kwargs = run.get("env_kwargs") or {} if env_kwargs is None else env_kwargs
    genv = _make_env(resolve_env(env, kwargs), get_algo(run["algo"]))
    want = _spec_of(run, run_dir)
    if genv.spec.obs != want.obs or genv.spec.action != want.action:
        raise EnvError(f"env has observation space {genv.spec.obs.to_json()} and action space "
                       f"{genv.spec.action.to_json()}; the run was trained with "
                       f"{want.obs.to_json()} and {want.action.to_json()}")
    return genv


def _compiled_driver(run: dict, cfg: Config, run_dir: Path) -> CompiledDriver:
    if run.get("capacity") != getattr(cfg, "buffer_size", None):
        raise CheckpointError(f"{run_dir}: config.json is inconsistent (capacity != buffer_size)")
    return CompiledDriver(cfg, run["env"], run["seeds"], run.get("env_kwargs") or None)


def resume(run_dir: str | Path, steps: int | None = None, progress: bool | None = None,
           env: Any = None, on_eval: Callable | None = None) -> Run | Sweep:
    """Continue a run from its latest checkpoint: ``steps`` more env steps, or (None) up to
    the total it was started with, so a crashed run finishes what it was asked to do."""
    run_dir = Path(run_dir)
    run = rf.read_run(run_dir)
    cfg = _config_from(run)
    if steps is not None:
        rf.check_int("steps", steps, 1)
    compiled = run["driver"] == "compiled"
    if compiled or (run["driver"] == "offline" and
                    any((run_dir / "checkpoints").glob("step_*"))):
        driver = (_compiled_driver if compiled else _offline_driver)(run, cfg, run_dir)
        ckpt = latest_checkpoint(run_dir)
        meta, arrays = load_checkpoint(ckpt, expect_algo=run["algo"])
        driver.restore(meta, arrays, str(ckpt))
        start = driver.step
        until = rf.resume_target(run_dir, run, start, steps)
        log.info("resuming %s from %s (step %d) to step %d", run["algo"], ckpt, start, until)
        return (_compiled if compiled else _single)(run_dir, run, driver, cfg, until,
                                                    progress, on_eval, start, meta)
    if not any((run_dir / "checkpoints").glob("step_*")):
        # stopped (crashed, killed) before its first checkpoint: nothing to continue from,
        # so the run starts again from step 0 with its saved config, seed and total
        if run["driver"] != "offline":
            _env_for_run(run, run_dir, env)  # the env can still be made, with the same spaces
        log.warning("'%s' has no checkpoint yet (it stopped before its first one): starting "
                    "it again from step 0", run_dir)
        rf.restart_unstarted(run_dir)
        total = int(run["steps"]) if steps is None else int(steps)
        if run["driver"] == "offline":
            return train(cfg, None, steps=total, seed=int(run["seed"]), out=run_dir,
                         progress=progress, on_eval=on_eval, dataset=run["dataset"]["name"])
        return train(cfg, env if env is not None else run["env"], steps=total,
                     seed=int(run["seed"]), out=run_dir, progress=progress,
                     env_kwargs=run.get("env_kwargs") or None, on_eval=on_eval,
                     init=run.get("init", {}).get("run"))
    ckpt = latest_checkpoint(run_dir)
    meta, arrays = load_checkpoint(ckpt, expect_algo=run["algo"])
    genv = _env_for_run(run, run_dir, env)
    redirect_mujoco_log(run_dir)
    prior = None  # a run started from an offline one samples its dataset too
    if run.get("init", {}).get("dataset"):
        prior = warmstart.prior_transitions(run["init"], genv.spec)
    driver = _gym_driver(get_algo(run["algo"]), cfg, genv, int(run["seed"]), run_dir,
                         prior=prior)
    driver.restore(meta, arrays, str(ckpt))
    start = driver.step
    until = rf.resume_target(run_dir, run, start, steps)
    log.info("resuming %s from %s (step %d) to step %d", run["algo"], ckpt, start, until)
    return _single(run_dir, run, driver, cfg, until, progress, on_eval, start, meta)


# ============================================================================ load, evaluate
def _host_policy(run: dict, cfg: Config, run_dir: Path, folder: str) -> Policy:
    """A Gymnasium run's policy from its checkpoint alone (no env needed)."""
    ckpt = latest_checkpoint(run_dir, folder)
    meta, arrays = load_checkpoint(ckpt, expect_algo=run["algo"])
    spec = _spec_of(run, run_dir)
    fns = get_algo(run["algo"]).build(cfg, spec)
    state = restore_pytree(jax.eval_shape(fns.init, jax.random.PRNGKey(0)), arrays, "state",
                           str(ckpt))
    host = meta.get("host", {})
    try:
        if host.get("offline_obs_stats"):  # fixed dataset statistics (offline runs)
            stats = ObsStats(np.asarray(arrays["offline/obs_mean"], np.float32),
                             np.asarray(arrays["offline/obs_std"], np.float32))
        elif host.get("normalize_obs"):
            stats = ObsRMS.from_state(spec.obs, arrays).stats()
        else:
            stats = None
    except MALFORMED as exc:
        raise CheckpointError(f"{ckpt}: observation statistics are missing or malformed "
                              f"({exc!r})") from None
    return Policy(run["algo"], fns.policy_params(state), stats, spec, fns.act)


def _compiled_state(run: dict, cfg: Config, run_dir: Path, folder: str) -> CompiledDriver:
    driver = _compiled_driver(run, cfg, run_dir)
    ckpt = latest_checkpoint(run_dir, folder)
    _, arrays = load_checkpoint(ckpt, expect_algo=run["algo"])
    driver.restore_policy(arrays, str(ckpt))
    return driver


def load(run_dir: str | Path, seed: int | None = None, best: bool = False) -> Policy:
    """The deployable policy of a run folder: its latest checkpoint, or with ``best`` the one
    that scored best in the periodic evaluation (``eval_every``). For a compiled multi-seed
    run, ``seed`` picks the seed (default: the first)."""
    run_dir = Path(run_dir)
    run = rf.read_run(run_dir)
    cfg = _config_from(run)
    folder = "best" if best else "checkpoints"
    if run["driver"] == "compiled":
        seeds = run["seeds"]
        if seed is not None and seed not in seeds:
            raise CheckpointError(f"seed {seed} is not in this run (seeds {seeds})")
        driver = _compiled_state(run, cfg, run_dir, folder)
        return driver.policy(0 if seed is None else seeds.index(seed))
    return _host_policy(run, cfg, run_dir, folder)


def evaluate(run_dir: str | Path, episodes: int = 10, seed: int | None = None,
             env: Any = None, best: bool = False, env_kwargs: dict | None = None) -> dict:
    """Deterministic evaluation of a run's policy (``best``: the best checkpoint); writes
    ``eval.json`` (``eval_best.json``) in the run folder. ``env_kwargs`` evaluates on the
    env made with other arguments than training's (a robustness check)."""
    rf.check_int("episodes", episodes, 1)
    run_dir = Path(run_dir)
    run = rf.read_run(run_dir)
    if run["driver"] == "compiled":
        driver = _compiled_state(run, _config_from(run), run_dir,
                                 "best" if best else "checkpoints")
        per_seed = [r["returns"] for r in driver.evaluate(episodes)]
        means = np.mean(per_seed, axis=1)
        result = {"eval/return_mean": float(means.mean()),
                  "eval/return_std_across_seeds": float(means.std()),
                  "eval/episodes": episodes, "eval/seeds": run["seeds"],
                  "eval/returns_per_seed": per_seed}
    else:
        policy = load(run_dir, best=best)
        if run["env"] is None and env is None:
            raise EnvError(f"{run_dir} learned from dataset '{run['dataset']['name']}', which "
                           "records no env: evaluate its policy in yours (Python: env=...)")
        genv = _env_for_run(run, run_dir, env, env_kwargs)
        r = evaluate_policy(policy.act, genv.env, episodes,
                            run["seed"] if seed is None else seed)
        result = {**rf.eval_stats(r["returns"], r["lengths"]), "eval/lengths": r["lengths"]}
        refs = run.get("dataset", {}).get("references", {})
        if env is None and not env_kwargs:  # scores compare returns in the dataset's env
            result.update({f"eval/normalized_score_{k}": float(normalized_score(
                result["eval/return_mean"], tuple(v))) for k, v in refs.items()})
    rf.write_eval(run_dir, result, best)
    return result


def evaluate_perturbed(run_dir: str | Path, grid: dict[str, list], episodes: int = 10,
                       seed: int | None = None, best: bool = False) -> dict:
    """Zero-shot robustness (docs/deploy.md): the run's deterministic policy, without further
    training, on env variants, one name at a time: for each ``name: [values]`` in ``grid``,
    a perturbation of :mod:`tandem.envs.perturb` (noise, delay, MuJoCo model error) or an
    argument of the env's constructor. The nominal env is the first row. Returns the table and
    writes it to ``perturb.json`` in the run folder."""
    rf.check_int("episodes", episodes, 1)
    if not grid:
        raise ConfigError("--perturb: name at least one perturbation, e.g. body_mass=0.8,1.2")
    run_dir = Path(run_dir)
    run = rf.read_run(run_dir)
    if run["driver"] == "compiled" or run["env"] is None:
        raise EnvError("--perturb evaluates in a Gymnasium env: this run has "
                       + ("a JAX-native env" if run["driver"] == "compiled" else "no env"))
    policy = load(run_dir, best=best)
    seed = run["seed"] if seed is None else seed
    base_kwargs = dict(run.get("env_kwargs") or {})

    def score(name=None, value=None) -> dict:
        kwargs = base_kwargs if name is None or name in PERTURBATIONS else \
            {**base_kwargs, name: value}
        genv = _env_for_run(run, run_dir, None, kwargs)
        env = genv.env if name not in PERTURBATIONS else perturb(genv.env, name, value)
        try:
            r = evaluate_policy(policy.act, env, episodes, seed)
        finally:
            env.close()
        stats = rf.eval_stats(r["returns"], r["lengths"])
        return {"perturbation": name or "nominal", "value": value,
                "return_mean": stats["eval/return_mean"], "return_std": stats["eval/return_std"],
                "returns": r["returns"]}

    rows = [score()]
    for name, values in grid.items():
        rows += [score(name, v) for v in values]
    nominal = rows[0]["return_mean"]
    for row in rows:
        row["return_vs_nominal"] = (row["return_mean"] - nominal) / max(abs(nominal), 1e-8)
    result = {"run": str(run_dir), "env": run["env"], "episodes": episodes, "seed": seed,
              "best": best, "rows": rows}
    rf.write_perturb(run_dir, result)
    return result


def export(run_dir: str | Path, out: str | Path, fmt: str = "onnx", best: bool = False,
           seed: int | None = None) -> Path:
    """Write a run's deterministic policy at ``out`` (docs/deploy.md): an ONNX model, or with
    ``fmt="npz"`` the same graph as arrays (.npz) and a JSON beside them. The latest
    checkpoint, or with ``best`` the best-evaluated one; ``seed`` picks the seed of a compiled
    multi-seed run. Nothing is written unless the whole model is."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    require_onnx()  # before any work: a missing extra is the first thing to say
    run_dir = Path(run_dir)
    run = rf.read_run(run_dir)
    policy = load(run_dir, seed=seed, best=best)
    ckpt = latest_checkpoint(run_dir, "best" if best else "checkpoints")
    meta = {"config_hash": config_hash(run["config"]), "run": run_dir.resolve().name,
            "checkpoint": f"{ckpt.parent.name}/{ckpt.name}",
            "seed": str(seed if seed is not None else
                        run.get("seed", (run.get("seeds") or [""])[0]))}
    model = policy_model(policy, meta)
    return write_model(model, Path(out)) if fmt == "onnx" else write_npz(model, Path(out))
