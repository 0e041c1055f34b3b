"""Offline RL against d3rlpy: the same locally made datasets, seeds, gradient-step budget and
evaluation; normalised score (IQM with 95% CI) and gradient steps per second, written to
benchmarks/results/offline.json.

    python benchmarks/offline.py setup        # installs d3rlpy 2.8.1 beside our gymnasium
    python benchmarks/offline.py datasets     # SAC runs -> medium and medium-replay datasets
    python benchmarks/offline.py train        # the plan below (25-30 CPU-hours)
    python benchmarks/offline.py train --datasets halfcheetah/medium-v0 --seeds 0 \\
        --steps 20000 --algos tandem-iql,d3rlpy-iql     # a slice of it
    python benchmarks/offline.py report       # the JSON's table, P(SAC-RND > best d3rlpy)

Datasets (D4RL's recipes, made from tandem's own runs; nothing is downloaded): a SAC run of
``ONLINE[env]`` env steps is the "medium" policy; ``<env>/medium-v0`` is that policy's
actions with N(0, 0.1^2) noise over >= 200k transitions, ``<env>/medium-replay-v0`` the run's
replay buffer (all it collected on the way to medium). References: a random policy and the
SAC run (local), and D4RL's published ones.

Plan (seeds fixed in advance): every dataset x seeds 0-2 x 100k gradient steps at batch 256
for the main rows, tandem SAC-RND, IQL, TD3+BC, BC against d3rlpy IQL, TD3+BC and ReBRAC; one
seed for tandem CSVE, CFPI and d3rlpy CQL. Each side runs its documented defaults with its
paper's preprocessing (d3rlpy: the observation and reward scalers of its reproduction
scripts, recorded in the JSON); SAC-RND keeps its own batch of 1024 (the issue's batch 256 is
d3rlpy's default), so its updates/s is per its own batch. d3rlpy learns from an MDPDataset
built from the same Minari episodes (terminals and timeouts apart); everyone is evaluated by
tandem.core.evaluate.evaluate_policy (10 episodes, deterministic, reset seeds seed +
1,000,003 + i) once, after training. updates/s = gradient steps / training wall time (set-up
and compilation included, evaluation excluded), each run alone on one pinned core with one
thread. Runs are subprocesses, --jobs at a time; each writes its own JSON row, so the script
can be stopped and re-run to complete a set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
# datasets, source runs and per-run rows (git-ignored); TANDEM_OFFLINE_BENCH moves them
ROOT = Path(os.environ.get("TANDEM_OFFLINE_BENCH", HERE / "results" / "offline"))
JSON = (ROOT / "offline.json" if "TANDEM_OFFLINE_BENCH" in os.environ
        else HERE / "results" / "offline.json")
ONLINE = {"HalfCheetah-v5": 60_000, "Hopper-v5": 100_000}   # env steps of the "medium" run
MEDIUM_TRANSITIONS = 200_000
NOISE = 0.1
MAIN = ("tandem-sac-rnd", "tandem-iql", "tandem-td3bc", "tandem-bc", "d3rlpy-iql",
        "d3rlpy-td3bc", "d3rlpy-rebrac")
EXTRA = ("tandem-csve", "tandem-cfpi", "d3rlpy-cql")
STEPS, SEEDS, EVAL_EPISODES = 100_000, (0, 1, 2), 10
# SAC-RND's beta is per dataset in its paper; the authors' repository keeps only the sweeps
# (locomotion 1-25), so 1.0 (their default) until this benchmark has swept it
SAC_RND_BETA: dict[str, float] = {}
D3RLPY_PACKAGES = ["d3rlpy==2.8.1", "gym==0.26.2", "gym-notices", "cloudpickle", "structlog",
                   "dataclasses-json", "marshmallow", "typing-inspect", "mypy-extensions",
                   "colorama", "scikit-learn"]


def dataset_names() -> list[str]:
    return [f"{env.split('-')[0].lower()}/{kind}-v0" for env in ONLINE
            for kind in ("medium", "medium-replay")]


# ============================================================================ set-up
def setup() -> None:
    """d3rlpy 2.8.1 pins gymnasium 1.0.0; --no-deps keeps ours, its own needs come by name."""
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "--no-deps", *D3RLPY_PACKAGES[:-1]], check=True)
    subprocess.run([*pip, D3RLPY_PACKAGES[-1]], check=True)  # with its scipy/joblib deps
    subprocess.run([sys.executable, "-c", "import d3rlpy; print('d3rlpy', d3rlpy.__version__)"],
                   check=True)


def make_datasets(envs: list[str]) -> None:
    os.environ["MINARI_DATASETS_PATH"] = str(ROOT / "minari")
    from tandem import SACConfig, api
    from tandem import datasets as dsets
    from tandem.envs import datasets as ds
    for env_id in envs:
        steps = ONLINE[env_id]
        short = env_id.split("-")[0].lower()
        run_dir = ROOT / "sources" / short
        if not (run_dir / "summary.json").is_file():
            shutil.rmtree(run_dir, ignore_errors=True)
            api.train(SACConfig(checkpoint_every=steps, eval_every=0), env_id, steps=steps,
                      seed=0, out=run_dir, progress=False)
        if not ds.dataset_folder(f"{short}/medium-replay-v0").is_dir():
            dsets.from_run(run_dir, f"{short}/medium-replay-v0", expert=run_dir)
        if not ds.dataset_folder(f"{short}/medium-v0").is_dir():
            # episodes until MEDIUM_TRANSITIONS: the run's episodes are its env's max length
            # (HalfCheetah) or shorter (Hopper falls), so measure one batch first
            probe = f"{short}/probe-v0"
            if not ds.dataset_folder(probe).is_dir():
                dsets.collect(probe, 10, run_dir=run_dir, noise=NOISE, seed=10_000_000)
            mean_len = ds.load_dataset(probe).episode_lengths.mean()
            episodes = int(1.1 * MEDIUM_TRANSITIONS / mean_len) + 1
            dsets.collect(f"{short}/medium-v0", episodes, run_dir=run_dir, noise=NOISE,
                          expert=run_dir)
        for name in (f"{short}/medium-v0", f"{short}/medium-replay-v0"):
            print(json.dumps({k: v for k, v in dsets.info(name).items()
                              if k in ("name", "transitions", "episodes", "return_mean",
                                       "references", "normalized_score_mean")}), flush=True)


# ============================================================================ children
def child(algo: str, dataset: str, seed: int, steps: int, out: Path) -> None:
    os.environ["MINARI_DATASETS_PATH"] = str(ROOT / "minari")
    from tandem.core.evaluate import evaluate_policy
    from tandem.envs import datasets as ds
    data = ds.load_dataset(dataset)
    lib, name = algo.split("-", 1)
    t0 = time.perf_counter()
    if lib == "tandem":
        act, row = _train_tandem(name, dataset, seed, steps, out)
    else:
        act, row = _train_d3rlpy(name, data, seed, steps)
    train_s = time.perf_counter() - t0
    r = evaluate_policy(act, data.make_env(), EVAL_EPISODES, seed)
    ret = float(sum(r["returns"]) / len(r["returns"]))
    scores = {k: float(ds.normalized_score(ret, v)) for k, v in data.references.items()}
    out.write_text(json.dumps({
        "algo": algo, "dataset": dataset, "seed": seed, "steps": steps, "return": ret,
        "returns": r["returns"], "normalized": scores, "train_s": train_s,
        "updates_per_s": steps / train_s, "dataset_checksum": data.checksum, **row,
        "date": time.strftime("%Y-%m-%d %H:%M"), "load_after": os.getloadavg()}, indent=1))


def _train_tandem(name: str, dataset: str, seed: int, steps: int, out: Path):
    from tandem import api
    from tandem.algos import get_algo
    cfg = get_algo(name).config_cls(eval_every=0, eval_episodes=0, checkpoint_every=0,
                                    log_every=max(1000, steps // 20))
    if name == "sac-rnd" and dataset in SAC_RND_BETA:
        cfg = cfg.replace(beta=SAC_RND_BETA[dataset])
    run_dir = out.with_suffix("")
    shutil.rmtree(run_dir, ignore_errors=True)
    run = api.train(cfg, steps=steps, seed=seed, dataset=dataset, out=run_dir, progress=False)
    return run.policy.act, {"config": cfg.to_dict(), "library": "tandem"}


def _train_d3rlpy(name: str, data, seed: int, steps: int):
    import d3rlpy
    import numpy as np
    import torch
    torch.set_num_threads(1)
    d3rlpy.seed(seed)
    # one row per step; an episode ends at a terminal or a timeout, which d3rlpy keeps apart
    mdp = d3rlpy.dataset.MDPDataset(
        observations=np.asarray(data.obs, np.float32),
        actions=np.asarray(data.action, np.float32),
        rewards=np.asarray(data.reward, np.float32),
        terminals=np.asarray(data.terminated, np.float32),
        timeouts=np.asarray(data.truncated, np.float32))
    scaler = d3rlpy.preprocessing.StandardObservationScaler()
    returns_scaler = d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0)
    configs = {  # defaults, with the preprocessing of d3rlpy's reproduction scripts
        "iql": (d3rlpy.algos.IQLConfig, {"reward_scaler": returns_scaler},
                "reward: ReturnBasedRewardScaler(1000)"),
        "td3bc": (d3rlpy.algos.TD3PlusBCConfig, {"observation_scaler": scaler},
                  "observation: StandardObservationScaler"),
        "rebrac": (d3rlpy.algos.ReBRACConfig, {"observation_scaler": scaler},
                   "observation: StandardObservationScaler"),
        "cql": (d3rlpy.algos.CQLConfig, {}, "none"),
    }
    cls, kwargs, prep = configs[name]
    algo = cls(**kwargs).create(device="cpu:0")
    algo.fit(mdp, n_steps=steps, n_steps_per_epoch=min(steps, 10_000), show_progress=False,
             save_interval=10**9, logger_adapter=d3rlpy.logging.NoopAdapterFactory())
    cfg = cls(**kwargs)
    fields = ("batch_size", "gamma", "actor_learning_rate", "critic_learning_rate", "tau",
              "expectile", "weight_temp", "max_weight", "alpha", "actor_beta", "critic_beta",
              "conservative_weight", "n_critics")
    return (lambda obs: algo.predict(np.asarray(obs, np.float32)[None])[0],
            {"library": f"d3rlpy {d3rlpy.__version__}", "preprocessing": prep,
             "config": {f: getattr(cfg, f) for f in fields if hasattr(cfg, f)}})


# ============================================================================ parent
def train(datasets: list[str], algos: list[str], seeds: list[int], steps: int, jobs: int,
          cores: list[int]) -> int:
    rows = ROOT / "rows"
    todo = [(a, d, s) for s in seeds for d in datasets for a in algos
            if not (rows / _row_name(a, d, s, steps)).is_file()]
    load0 = os.getloadavg()
    print(f"{len(todo)} runs; machine {platform.platform()}, {os.cpu_count()} cpus, "
          f"load {load0[0]:.2f}", flush=True)
    free: queue.Queue = queue.Queue()
    for i in range(jobs):
        free.put(cores[i % len(cores)])
    lock = threading.Lock()

    def run(job) -> int:
        algo, dataset, seed = job
        final = rows / _row_name(algo, dataset, seed, steps)
        part = rows / "_partial" / final.name
        part.parent.mkdir(parents=True, exist_ok=True)
        core = free.get()
        pin = ["taskset", "-c", str(core)] if shutil.which("taskset") else []
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1"}
        t0 = time.time()
        try:
            r = subprocess.run([*pin, sys.executable, __file__, "child", algo, dataset,
                                str(seed), str(steps), str(part)], env=env,
                               capture_output=True, text=True)
        finally:
            free.put(core)
        ok = r.returncode == 0 and part.is_file()
        print(f"{algo:15s} {dataset:28s} seed {seed}: {time.time() - t0:6.0f} s "
              + ("ok" if ok else f"FAILED\n{r.stderr[-2000:]}"), flush=True)
        if ok:
            part.rename(final)
            with lock:
                report()
        return 0 if ok else 1

    with ThreadPoolExecutor(jobs) as pool:
        failed = sum(pool.map(run, todo))
    return 1 if failed else 0


def _row_name(algo: str, dataset: str, seed: int, steps: int) -> str:
    return f"{algo}__{dataset.replace('/', '_')}__s{seed}__{steps}.json"


def report() -> dict:
    """Every row under ROOT/rows (and rows the JSON kept from earlier checkouts) into the
    JSON: per (dataset, algo, steps) the per-seed normalised scores, IQM [95% CI],
    updates/s, and per dataset P(SAC-RND > best d3rlpy row)."""
    import numpy as np

    from tandem.core.stats import bootstrap_ci, poi_ci
    previous = json.loads(JSON.read_text()) if JSON.is_file() else {}
    rows = {(r["algo"], r["dataset"], r["seed"], r["steps"]): r for r in previous.get("rows", [])}
    for f in sorted((ROOT / "rows").glob("*.json")) if (ROOT / "rows").is_dir() else []:
        r = json.loads(f.read_text())
        rows[(r["algo"], r["dataset"], r["seed"], r["steps"])] = r
    table: dict = {}
    for (algo, dataset, seed, steps), r in sorted(rows.items()):
        cell = table.setdefault(f"{dataset} | {steps}", {}).setdefault(algo, {
            "seeds": [], "score_local": [], "score_d4rl": [], "updates_per_s": []})
        cell["seeds"].append(seed)
        cell["score_local"].append(r["normalized"].get("local"))
        cell["score_d4rl"].append(r["normalized"].get("d4rl"))
        cell["updates_per_s"].append(r["updates_per_s"])
    for key, cells in table.items():
        for algo, cell in cells.items():
            s = np.asarray(cell["score_d4rl"] if None not in cell["score_d4rl"]
                           else cell["score_local"], float)
            cell["iqm_ci"] = list(bootstrap_ci(s)) if len(s) > 1 else [float(s[0])] * 3
            cell["updates_per_s_mean"] = float(np.mean(cell["updates_per_s"]))
            cell["inconclusive"] = bool(np.median(s) < 20)
        peers = [a for a in cells if a.startswith("d3rlpy-") and a != "d3rlpy-cql"]
        if "tandem-sac-rnd" in cells and peers:
            best = max(peers, key=lambda a: cells[a]["iqm_ci"][0])
            x = cells["tandem-sac-rnd"]["score_d4rl"]
            y = cells[best]["score_d4rl"]
            cells["_p_sac_rnd_beats_best_d3rlpy"] = {
                "best_d3rlpy": best, "p_ci": list(poi_ci([np.asarray(x)], [np.asarray(y)]))}
        for ours, theirs in (("tandem-iql", "d3rlpy-iql"), ("tandem-td3bc", "d3rlpy-td3bc")):
            if ours in cells and theirs in cells:
                cells.setdefault("_speed_ratio", {})[ours] = (
                    cells[ours]["updates_per_s_mean"] / cells[theirs]["updates_per_s_mean"])
    out = {"plan": {"datasets": dataset_names(), "main": MAIN, "extra": EXTRA, "steps": STEPS,
                    "seeds": SEEDS, "online_steps": ONLINE, "noise": NOISE,
                    "medium_transitions": MEDIUM_TRANSITIONS, "sac_rnd_beta": SAC_RND_BETA,
                    "eval_episodes": EVAL_EPISODES},
           "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
           "cpus": os.cpu_count(), "table": table, "rows": list(rows.values())}
    JSON.write_text(json.dumps(out, indent=1))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup")
    dp = sub.add_parser("datasets")
    dp.add_argument("--envs", default=",".join(ONLINE), help="one process per env can run "
                    "side by side")
    t = sub.add_parser("train")
    t.add_argument("--datasets", default=",".join(dataset_names()))
    t.add_argument("--algos", default=None, help="default: the main rows (with --extra: the "
                   "one-seed rows)")
    t.add_argument("--extra", action="store_true")
    t.add_argument("--seeds", default=None)
    t.add_argument("--steps", type=int, default=STEPS)
    t.add_argument("--jobs", type=int, default=2)
    t.add_argument("--cores", default=None)
    sub.add_parser("report")
    c = sub.add_parser("child")
    c.add_argument("algo")
    c.add_argument("dataset")
    c.add_argument("seed", type=int)
    c.add_argument("steps", type=int)
    c.add_argument("out")
    a = p.parse_args(argv)
    if a.cmd == "setup":
        setup()
    elif a.cmd == "datasets":
        make_datasets(a.envs.split(","))
    elif a.cmd == "child":
        child(a.algo, a.dataset, a.seed, a.steps, Path(a.out))
    elif a.cmd == "report":
        print(json.dumps(report()["table"], indent=1))
    else:
        algos = a.algos.split(",") if a.algos else list(EXTRA if a.extra else MAIN)
        seeds = ([int(s) for s in a.seeds.split(",")] if a.seeds else
                 [0] if a.extra else list(SEEDS))
        cores = ([int(c) for c in a.cores.split(",")] if a.cores else
                 [i % (os.cpu_count() or 1) for i in range(a.jobs)])
        return train(a.datasets.split(","), algos, seeds, a.steps, a.jobs, cores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
