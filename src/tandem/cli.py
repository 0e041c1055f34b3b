"""Command line: ``tandem train|eval|export|resume|report|tune|sweep|check-env|dataset|config``.

Exit codes: 0 on success, 2 with one line on stderr for a usage, config, env or checkpoint
error (anything a user can fix), 130 when interrupted with Ctrl-C (a checkpoint is written at
the step where it stopped), 1 for an unexpected failure (a bug: the traceback is shown).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from tandem import api
from tandem import datasets as datasets_mod
from tandem import report as report_mod
from tandem import sweep as sweep_mod
from tandem import tune as tune_mod
from tandem.algos import algo_names, get_algo
from tandem.envs import check as env_check
from tandem.envs.gym import make_env
from tandem.envs.perturb import parse_perturb
from tandem.envs.resolve import parse_env_kwargs
from tandem.errors import TandemError, TrainingInterrupted
from tandem.run.folder import check_int, parse_seeds

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing the usage block and exiting."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise _UsageError(message)


ENV_KWARGS_HELP = ("keyword arguments of the env's constructor, k=v,... (numbers, true/false, "
                   "none, strings), e.g. --env-kwargs g=9.81,max_torque=2")


def _build_parser() -> _Parser:
    p = _Parser(prog="tandem", description="Train, evaluate and resume actor-critic agents.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="train an agent; extra --field value pairs set config "
                       "fields (see `tandem config ALGO`)")
    t.add_argument("algo", choices=algo_names())
    t.add_argument("--env", default=None,
                   help="Gymnasium env id (default Pendulum-v1), or a JAX-native env trained as "
                   "one compiled program: gymnax:Pendulum-v1, brax:halfcheetah")
    t.add_argument("--dataset", default=None,
                   help="offline algorithms (bc, td3bc, iql, sac-rnd, cfpi, csve): the Minari "
                   "dataset id or folder to learn from; they evaluate in its env")
    t.add_argument("--init", default=None, metavar="RUN",
                   help="start from another run's weights (sac from a sac-rnd or sac run, td3 "
                   "from td3); an offline run's dataset stays in the replay, half of each batch; "
                   "--env defaults to the run's")
    t.add_argument("--steps", type=int, default=50_000, help="env steps to train (offline: "
                   "gradient steps)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--seeds", default=None,
                   help="train several seeds into one folder: a count from --seed (8), a range "
                   "(0-9) or a list (1,3,5); vmapped as one program on a JAX-native env")
    t.add_argument("--envs", type=int, default=None,
                   help="parallel envs of an on-policy algorithm (ppo, a2c): sets n_envs")
    t.add_argument("--out", default=None, help="run folder (default runs/<algo>_<env>_seed<S>_<time>)")
    t.add_argument("--progress", choices=("auto", "bar", "lines"), default="auto")
    t.add_argument("--no-check-env", action="store_true",
                   help="skip the env check run before training (see tandem check-env)")
    t.add_argument("--env-kwargs", default=None, help=ENV_KWARGS_HELP)

    e = sub.add_parser("eval", help="evaluate a run's deterministic policy")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--seed", type=int, default=None)
    e.add_argument("--best", action="store_true",
                   help="the best checkpoint of the periodic evaluation (eval_every)")
    e.add_argument("--env-kwargs", default=None,
                   help="evaluate on the env made with these arguments instead of the run's "
                   "(a robustness check): " + ENV_KWARGS_HELP)

    e.add_argument("--perturb", action="append", default=None, metavar="NAME=V1,V2,...",
                   help="zero-shot robustness: evaluate on env variants, one row per value "
                   "(repeat for more names); NAME is obs_noise, action_noise, action_delay, "
                   "body_mass, friction, actuator_gain (MuJoCo) or an env argument; writes "
                   "perturb.json")

    x = sub.add_parser("export", help="write a run's deterministic policy as an ONNX model "
                       "that runs without tandem (tandem.deploy.OnnxPolicy, or onnxruntime)")
    x.add_argument("run_dir")
    x.add_argument("--out", required=True, help="the model file to write, e.g. policy.onnx")
    x.add_argument("--format", default="onnx", choices=("onnx", "npz"),
                   help="onnx (default), or npz: the same graph as arrays + a JSON beside "
                   "them, for the NumPy forward pass in docs/deploy.md")
    x.add_argument("--best", action="store_true",
                   help="the best checkpoint of the periodic evaluation (eval_every)")
    x.add_argument("--seed", type=int, default=None,
                   help="a compiled multi-seed run: which seed's policy (default the first)")

    rp = sub.add_parser("report", help="an HTML report (curves, IQM with bootstrap intervals, "
                        "probability of improvement, config, video) of run or sweep folders")
    rp.add_argument("dirs", nargs="+", metavar="DIR")
    rp.add_argument("--out", default="report", help="report folder (default ./report)")
    rp.add_argument("--label", action="append", default=None,
                    help="a name per DIR, in order (repeat the option); the same name on "
                    "folders of different envs groups them as one algorithm")
    rp.add_argument("--title", default=None)
    rp.add_argument("--no-video", action="store_true", help="skip the GIF of each final policy")

    r = sub.add_parser("resume", help="continue a run from its latest checkpoint")
    r.add_argument("run_dir")
    r.add_argument("--steps", type=int, default=None,
                   help="more env steps to train (default: up to the run's original total)")
    r.add_argument("--progress", choices=("auto", "bar", "lines"), default="auto")

    tu = sub.add_parser("tune", help="search hyperparameters with Optuna (the study is kept in "
                        "a database, so running the same command again resumes it); extra "
                        "--field value pairs fix fields instead of searching them")
    tu.add_argument("algo", choices=algo_names())
    tu.add_argument("--env", default=None, help="Gymnasium id or JAX-native id (online "
                    "algorithms)")
    tu.add_argument("--dataset", default=None, help="offline algorithms: the Minari dataset "
                    "id or folder each trial learns from (evaluated in its env)")
    tu.add_argument("--trials", type=int, required=True,
                    help="finished (complete or pruned) trials the study should hold")
    tu.add_argument("--steps", type=int, default=50_000, help="env steps per trial (offline: "
                    "gradient steps)")
    tu.add_argument("--seed", type=int, default=0, help="training seed of every trial")
    tu.add_argument("--out", default=None, help="folder of the trials' runs and study.db "
                    "(default tune/<algo>_<env>)")
    tu.add_argument("--storage", default=None,
                    help="Optuna database URL (default sqlite:///<out>/study.db)")
    tu.add_argument("--study", default=None, help="study name (default <algo>-<env>)")
    tu.add_argument("--eval-every", type=int, default=None,
                    help="env steps between the evaluations reported to the pruner "
                    "(default steps/10)")
    tu.add_argument("--pruner", choices=("median", "none"), default="median")
    tu.add_argument("--env-kwargs", default=None, help=ENV_KWARGS_HELP)

    sw = sub.add_parser("sweep", help="train a grid of configurations x seeds as Ray tasks "
                        "into one folder (read it with tandem report OUT/*/); extra --field "
                        "value pairs set fields of every run")
    sw.add_argument("algo", choices=algo_names())
    sw.add_argument("--env", required=True, help="Gymnasium id or JAX-native id")
    sw.add_argument("--seeds", default="3", help="a count (3), a range (0-9) or a list (1,3,5)")
    sw.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                    help="values of one config field to sweep (repeat for a product)")
    sw.add_argument("--steps", type=int, default=50_000, help="env steps per run")
    sw.add_argument("--out", default=None, help="sweep folder (default sweeps/<algo>_<env>)")
    sw.add_argument("--cpus-per-run", type=float, default=1.0,
                    help="CPUs Ray reserves per run (how many run at once)")
    sw.add_argument("--ray-address", default=None,
                    help="Ray cluster to run on (default: a local Ray)")

    ce = sub.add_parser("check-env", help="check that a Gymnasium env follows the API tandem "
                        "trains on (spaces, dtypes, bounds, finite values, episode ends)")
    ce.add_argument("env", help="Gymnasium id (module:Id imports the module first)")
    ce.add_argument("--algo", default=None, choices=algo_names(),
                    help="also check the action space for this algorithm")
    ce.add_argument("--steps", type=int, default=300, help="random steps to play")
    ce.add_argument("--seed", type=int, default=0)
    ce.add_argument("--env-kwargs", default=None, help=ENV_KWARGS_HELP)

    d = sub.add_parser("dataset", help="make offline datasets (Minari format) and look into "
                       "them: collect, from-run, import, info")
    dsub = d.add_subparsers(dest="dataset_command", parser_class=_Parser)
    dc = dsub.add_parser("collect", help="record episodes of a run's policy (or --policy random "
                         "--env ENV)")
    dc.add_argument("run_dir", nargs="?", default=None)
    dc.add_argument("--episodes", type=int, required=True)
    dc.add_argument("--out", required=True, help="dataset id [namespace/]name-vN (stored under "
                    "MINARI_DATASETS_PATH) or a folder path")
    dc.add_argument("--noise", type=float, default=0.0, help="Gaussian action noise std in "
                    "[-1, 1] policy units (default 0)")
    dc.add_argument("--policy", choices=("run", "random"), default="run")
    dc.add_argument("--env", default=None, help="the env of --policy random")
    dc.add_argument("--env-kwargs", default=None, help=ENV_KWARGS_HELP)
    dc.add_argument("--seed", type=int, default=0, help="episode i resets with seed + i")
    dc.add_argument("--expert", default=None, help="a run whose policy's mean return is the "
                    "local expert reference of normalised scores")
    dr = dsub.add_parser("from-run", help="an off-policy run's replay buffer as a dataset "
                         "(D4RL's medium-replay recipe)")
    dr.add_argument("run_dir")
    dr.add_argument("--out", required=True)
    dr.add_argument("--expert", default=None)
    di = dsub.add_parser("import", help="a controller's logs (.npz or .csv transitions) as a "
                         "dataset")
    di.add_argument("file")
    di.add_argument("--out", required=True)
    di.add_argument("--env", default=None, help="the env the logs come from (its spaces)")
    di.add_argument("--env-kwargs", default=None, help=ENV_KWARGS_HELP)
    di.add_argument("--spaces", default=None, help="the spaces as JSON when there is no env, "
                    "e.g. '{\"observation\": {\"shape\": [3]}, \"action\": {\"low\": [-2], "
                    "\"high\": [2]}}'")
    dn = dsub.add_parser("info", help="size, episodes, returns, reference returns")
    dn.add_argument("name", help="dataset id or folder")

    c = sub.add_parser("config", help="list an algorithm's config fields, defaults and ranges")
    c.add_argument("algo", choices=algo_names())
    return p


def _parse_overrides(config_cls, extra: Sequence[str]) -> dict:
    """['--batch-size', '128', '--tau=0.01'] -> {'batch_size': 128, 'tau': 0.01}."""
    out, i = {}, 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or tok == "--":
            raise _UsageError(f"unexpected argument '{tok}'")
        key, _, value = tok[2:].partition("=")
        key = key.replace("-", "_")
        if not value:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise _UsageError(f"--{tok[2:]} needs a value")
            value = extra[i + 1]
            i += 1
        out[key] = config_cls.parse_value(key, value)
        i += 1
    return out


def _progress(choice: str) -> bool | None:
    return {"auto": None, "bar": True, "lines": False}[choice]


def _run(argv: Sequence[str]) -> int:
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        raise _UsageError("no command given")
    if extra and args.command not in ("train", "tune", "sweep"):
        raise _UsageError(f"unrecognized arguments: {' '.join(extra)}")
    env_kwargs = parse_env_kwargs(getattr(args, "env_kwargs", None)) or None

    if args.command == "config":
        print(f"{args.algo} config fields:\n{get_algo(args.algo).config_cls.describe()}")
        return 0
    if args.command == "train":
        spec = get_algo(args.algo)
        overrides = _parse_overrides(spec.config_cls, extra)
        if args.envs is not None:
            if "n_envs" not in spec.config_cls.field_names():
                raise _UsageError(f"--envs is for on-policy algorithms (ppo, a2c); {args.algo} "
                                  "collects from one env")
            overrides["n_envs"] = args.envs
        cfg = spec.config_cls(**overrides)
        env = args.env
        if spec.driver != "offline" and args.dataset is None and env is None and \
                args.init is None:
            env = "Pendulum-v1"
        run = api.train(cfg, env, steps=args.steps, seed=args.seed, out=args.out,
                        progress=_progress(args.progress), seeds=args.seeds,
                        check_env=not args.no_check_env, env_kwargs=env_kwargs,
                        dataset=args.dataset, init=args.init)
        _print_result(run.dir, run.summary)
    elif args.command == "resume":
        run = api.resume(args.run_dir, steps=args.steps, progress=_progress(args.progress))
        _print_result(run.dir, run.summary)
    elif args.command == "tune":
        spec = get_algo(args.algo)
        fixed = _parse_overrides(spec.config_cls, extra)
        if (args.env is None) == (args.dataset is None):
            raise _UsageError("tune needs --env (online algorithms) or --dataset (offline "
                              "ones)")
        where = str(args.env or args.dataset).strip("/")
        out = args.out or f"tune/{args.algo}_{where.replace('/', '_').replace(':', '_')}"
        study = tune_mod.tune(spec.config_cls, args.env, args.trials, args.steps, out, fixed,
                              args.seed, args.storage, args.study, args.eval_every, args.pruner,
                              env_kwargs, dataset=args.dataset)
        from optuna.trial import TrialState
        states = [t.state for t in study.trials]
        best = (tune_mod.params_to_fields(spec.config_cls.search_space, study.best_params)
                if TrialState.COMPLETE in states else None)
        print(json.dumps({
            "study": study.study_name, "out": out,
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED), "failed": states.count(TrialState.FAIL),
            "best_value": study.best_value if best is not None else None,
            "best_params": best}, default=list))
    elif args.command == "sweep":
        spec = get_algo(args.algo)
        check_int("steps", args.steps, 1)
        if not args.cpus_per_run > 0:
            raise _UsageError("--cpus-per-run must be > 0")
        base = spec.config_cls(**_parse_overrides(spec.config_cls, extra))
        grid = sweep_mod.parse_grid(args.grid, spec.config_cls)
        out = args.out or f"sweeps/{args.algo}_{args.env.replace('/', '_').replace(':', '_')}"
        record = sweep_mod.sweep(base, args.env, args.steps, parse_seeds(args.seeds), grid, out,
                       args.cpus_per_run, args.ray_address)
        failed = [r for r in record["runs"] if "error" in r]
        print(json.dumps({"sweep": str(out), "runs": len(record["runs"]),
                          "failed": len(failed)}))
        if failed:
            print(f"tandem: error: {len(failed)} of {len(record['runs'])} runs failed; their "
                  f"errors are in {out}/sweep.json", file=sys.stderr)
            return EXIT_USAGE
    elif args.command == "check-env":
        check_int("steps", args.steps, 1)
        check_int("seed", args.seed, 0)
        algo = get_algo(args.algo or "ppo")
        genv = make_env(args.env, algo.name, algo.action_spaces, env_kwargs)  # usable spaces
        warnings = env_check.check_env(args.env, env_kwargs, steps=args.steps, seed=args.seed)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(json.dumps({"env": args.env, "ok": True,
                          "observation_space": genv.spec.obs.to_json(),
                          "action_space": genv.spec.action.to_json(), "warnings": warnings}))
    elif args.command == "dataset":
        return _dataset(args, env_kwargs)
    elif args.command == "report":
        index = report_mod.write_report(args.dirs, args.out, args.label, args.title, not args.no_video)
        print(json.dumps({"report": str(index)}))
    elif args.command == "export":
        path = api.export(args.run_dir, args.out, args.format, best=args.best, seed=args.seed)
        print(json.dumps({"out": str(path), "format": args.format}))
    elif args.command == "eval" and args.perturb:
        if env_kwargs:
            raise _UsageError("--perturb varies the run's own env; drop --env-kwargs")
        table = api.evaluate_perturbed(args.run_dir, parse_perturb(args.perturb),
                                       episodes=args.episodes, seed=args.seed, best=args.best)
        for row in table["rows"]:
            print(f"{row['perturbation']:>14s} {str(row['value']):>8s}  return "
                  f"{row['return_mean']:10.2f} +- {row['return_std']:8.2f}  "
                  f"({100 * row['return_vs_nominal']:+.1f}% vs nominal)", file=sys.stderr)
        figure = Path(args.run_dir) / "perturb.png"
        try:
            report_mod.plot_perturb(table, figure)
        except report_mod.ReportError as exc:  # no matplotlib: the table is the result
            print(f"warning: no plot ({exc})", file=sys.stderr)
            figure = None
        print(json.dumps({"perturb": str(Path(args.run_dir) / "perturb.json"),
                          "plot": str(figure) if figure else None,
                          "rows": [{k: r[k] for k in ("perturbation", "value", "return_mean")}
                                   for r in table["rows"]]}))
    elif args.command == "eval":
        result = api.evaluate(args.run_dir, episodes=args.episodes, seed=args.seed,
                              best=args.best, env_kwargs=env_kwargs)
        print(json.dumps({k: v for k, v in result.items() if k.startswith("eval/")}))
    return 0


def _dataset(args, env_kwargs: dict | None) -> int:
    cmd = args.dataset_command
    if cmd is None:
        raise _UsageError("dataset needs a command: collect, from-run, import or info")
    if cmd == "info":
        print(json.dumps(datasets_mod.info(args.name), indent=1))
        return 0
    if cmd == "collect":
        check_int("seed", args.seed, 0)
        if args.policy == "random":
            if args.run_dir is not None or args.env is None:
                raise _UsageError("--policy random takes --env ENV and no RUN")
            path = datasets_mod.collect(args.out, args.episodes, None, args.noise, args.env,
                                        env_kwargs, args.seed, args.expert)
        else:
            if args.run_dir is None or args.env is not None:
                raise _UsageError("collect RUN records the run's policy in the run's env (no "
                                  "--env); or use --policy random --env ENV")
            path = datasets_mod.collect(args.out, args.episodes, args.run_dir, args.noise,
                                        seed=args.seed, expert=args.expert)
    elif cmd == "from-run":
        path = datasets_mod.from_run(args.run_dir, args.out, args.expert)
    else:
        path = datasets_mod.import_logs(args.file, args.out, args.env, env_kwargs, args.spaces)
    print(json.dumps({"dataset": args.out, "path": str(path)}))
    return 0


def _print_result(run_dir, summary: dict) -> None:
    keys = ("algo", "env", "seed", "seeds", "steps", "eval/return_mean", "eval/return_std",
            "eval/return_std_across_seeds", "eval/episodes", "time/sps", "time/sps_total",
            "time/compile_s", "time/wall_s")
    print(json.dumps({"run_dir": str(run_dir), **{k: summary[k] for k in keys if k in summary}}))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("absl").setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except _UsageError as exc:
        print(f"tandem: error: {exc} (see tandem --help)", file=sys.stderr)
        return EXIT_USAGE
    except TrainingInterrupted as exc:
        print(f"tandem: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TandemError as exc:
        print(f"tandem: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tandem: aborted; continue with `tandem resume RUN_DIR` from the last "
              "checkpoint", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
