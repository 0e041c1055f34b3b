"""``tandem report DIR...``: one static HTML page (plus its images) about one or more sweeps.

For every env: learning curves (mean over seeds and a 95% confidence band), the final
evaluation return of every seed with the interquartile mean (IQM) and its stratified-bootstrap
95% interval; with two or more run sets, the probability that one improves on the other
(averaged over the envs both ran); then each run set's configuration, library versions and
machine, and a short GIF of the final policy where the env can render.

A run set is a run folder (one seed) or a sweep folder (``seed_<s>/`` run folders, or a
compiled multi-seed run). Folders written by other libraries in the same layout
(``seed_<s>/summary.json`` with ``eval/returns``, ``seed_<s>/metrics.csv`` in long format)
are read too, which is how benchmarks put a peer library on the same plots.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import html
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from tandem.api import load
from tandem.core.stats import bootstrap_ci, mean_band, poi_ci
from tandem.errors import TandemError

log = logging.getLogger("tandem")

CURVE_METRICS = ("eval/return_mean", "rollout/ep_return_mean")
EXTRA_HINT = "install the report tools with: pip install 'tandem-rl[report]'"


class ReportError(TandemError):
    """A folder given to the report is not a run or sweep, or holds no results yet."""


# ============================================================================ reading
@dataclasses.dataclass
class SeedResult:
    seed: int
    dir: Path
    summary: dict
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # metric -> (steps, values)

    @property
    def final_returns(self) -> list[float]:
        return [float(r) for r in self.summary.get("eval/returns") or []]

    @property
    def final_mean(self) -> float | None:
        v = self.summary.get("eval/return_mean")
        return None if v is None else float(v)


@dataclasses.dataclass
class RunSet:
    label: str
    path: Path
    algo: str
    env: str
    run: dict  # config.json (algorithm, config, versions), {} for a folder without one
    seeds: list[SeedResult]

    @property
    def scores(self) -> np.ndarray:
        """Each seed's final mean evaluation return, the score the statistics are about."""
        return np.array([s.final_mean for s in self.seeds if s.final_mean is not None])

    def curve_metric(self) -> str | None:
        """The periodic evaluation if every seed has at least two points of it, else the
        training episodes' returns."""
        for m in CURVE_METRICS:
            if self.seeds and all(len(s.curves.get(m, ((), ()))[0]) >= 2 for s in self.seeds):
                return m
        return None


def _read_csv(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not path.is_file():
        return {}
    rows: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            try:
                rows.setdefault(r["name"], []).append((int(r["step"]), float(r["value"])))
            except (KeyError, TypeError, ValueError):
                raise ReportError(f"{path}: not a tandem metrics file (step,name,value rows)") \
                    from None
    return {k: (np.array([s for s, _ in v]), np.array([x for _, x in v]))
            for k, v in rows.items() if k in CURVE_METRICS}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: unreadable ({exc})") from None


def load_run_set(path: str | Path, label: str | None = None) -> RunSet:
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"'{path}' is not a folder; give run or sweep folders written by "
                          "`tandem train`")
    seed_dirs = sorted(path.glob("seed_*"), key=lambda p: _seed_number(p.name))
    if not seed_dirs and (path / "summary.json").is_file():
        seed_dirs = [path]  # one run
    seeds = []
    for d in seed_dirs:
        if not (d / "summary.json").is_file():
            raise ReportError(f"'{d}' has no summary.json: has its training finished? (an "
                              f"interrupted run continues with `tandem resume {d}`)")
        summary = _read_json(d / "summary.json")
        seeds.append(SeedResult(int(summary.get("seed", _seed_number(d.name))), d, summary,
                                _read_csv(d / "metrics.csv")))
    if not seeds:
        raise ReportError(f"'{path}' holds no runs (no summary.json, no seed_*/ folders)")
    run = _read_json(path / "config.json") if (path / "config.json").is_file() else \
        _read_json(seeds[0].dir / "config.json") if (seeds[0].dir / "config.json").is_file() \
        else {}
    algo = str(run.get("algo") or seeds[0].summary.get("algo") or "?")
    env = str(run.get("env") or seeds[0].summary.get("env") or "?")
    return RunSet(label or algo, path, algo, env, run, seeds)


def _seed_number(name: str) -> int:
    try:
        return int(name.rsplit("_", 1)[-1])
    except ValueError:
        return 0


# ============================================================================ figures
def _plt():
    try:
        import matplotlib
    except ImportError:
        raise ReportError(f"`tandem report` needs matplotlib; {EXTRA_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
          "#7f7f7f")


def _common_grid(seeds: list[SeedResult], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """[points] steps and [seeds, points] values on the steps every seed logged; when the
    seeds logged at different steps, linear interpolation onto the first seed's steps within
    the range they share."""
    grids = [s.curves[metric][0] for s in seeds]
    common = grids[0]
    for g in grids[1:]:
        common = np.intersect1d(common, g)
    if len(common) >= 2:
        return common, np.stack([v[np.isin(st, common)] for st, v in
                                 (s.curves[metric] for s in seeds)])
    lo, hi = max(g.min() for g in grids), min(g.max() for g in grids)
    steps = grids[0][(grids[0] >= lo) & (grids[0] <= hi)]
    return steps, np.stack([np.interp(steps, *s.curves[metric]) for s in seeds])


def plot_curves(sets: list[RunSet], env: str, path: Path) -> bool:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    drawn = False
    for k, rs in enumerate(sets):
        metric = rs.curve_metric()
        if metric is None:
            continue
        steps, values = _common_grid(rs.seeds, metric)
        if len(steps) == 0:
            continue
        mean, lo, hi = mean_band(values)
        c = COLORS[k % len(COLORS)]
        what = "eval" if metric.startswith("eval/") else "training episodes"
        ax.plot(steps, mean, color=c, lw=2, label=f"{rs.label} ({what}, {len(rs.seeds)} seeds)")
        ax.fill_between(steps, lo, hi, color=c, alpha=0.2, lw=0)
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(f"{env}: mean return and 95% confidence band across seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def final_figure(sets: list[RunSet], env: str, stats: dict[str, tuple]):
    """Every seed's final score per run set (a strip) with the IQM and its interval. The
    legend sits above the plot, outside the axes, so it never hides a point."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.7 * len(sets)))
    rng = np.random.default_rng(0)
    for k, rs in enumerate(sets):
        c = COLORS[k % len(COLORS)]
        y = len(sets) - 1 - k
        scores = rs.scores
        ax.scatter(scores, y + rng.uniform(-0.12, 0.12, len(scores)), color=c, alpha=0.7,
                   s=22, zorder=3, label="final eval return of a seed" if k == 0 else None)
        if rs.label in stats:
            p, lo, hi = stats[rs.label]
            ax.errorbar([p], [y], xerr=[[p - lo], [hi - p]], fmt="D", color="black",
                        ms=6, capsize=5, zorder=4, label="IQM, 95% CI" if k == 0 else None)
    ax.set_yticks(range(len(sets)), [rs.label for rs in reversed(sets)])
    ax.set_ylim(-0.6, len(sets) - 0.4)
    ax.set_xlabel("final evaluation return (mean over episodes)")
    ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{env}: every seed, and the interquartile mean", fontsize=11)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2,
              frameon=False, borderaxespad=0.3)
    fig.tight_layout()
    return fig


def plot_final(sets: list[RunSet], env: str, stats: dict[str, tuple], path: Path) -> None:
    fig = final_figure(sets, env, stats)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _plt().close(fig)


def plot_poi(rows: list[dict], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 0.8 + 0.6 * len(rows)))
    for y, r in enumerate(reversed(rows)):
        ax.errorbar([r["p"]], [y], xerr=[[r["p"] - r["lo"]], [r["hi"] - r["p"]]], fmt="o",
                    color="#1f77b4", capsize=5, ms=7)
    ax.axvline(0.5, color="gray", ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_yticks(range(len(rows)), [f"P({r['x']} > {r['y']})" for r in reversed(rows)])
    ax.set_xlabel("probability of improvement (95% stratified-bootstrap CI)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ============================================================================ video
def plot_perturb(table: dict, path: Path) -> None:
    """Return against each perturbation's values (``tandem eval --perturb``'s table): one
    panel per perturbation, mean +- sd over the episodes, the nominal return dashed."""
    plt = _plt()
    rows = table["rows"]
    nominal = rows[0]
    names = list(dict.fromkeys(r["perturbation"] for r in rows[1:]))
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.6 * max(1, len(names)), 3.2),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
        mine = [r for r in rows[1:] if r["perturbation"] == name]
        numeric = all(isinstance(r["value"], (int, float)) for r in mine)
        x = [r["value"] if numeric else i for i, r in enumerate(mine)]
        ax.errorbar(x, [r["return_mean"] for r in mine], [r["return_std"] for r in mine],
                    marker="o", capsize=3)
        ax.axhline(nominal["return_mean"], ls="--", color="gray", label="nominal")
        if not numeric:
            ax.set_xticks(x, [str(r["value"]) for r in mine])
        ax.set_xlabel(name)
        ax.set_ylabel("return")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _perturb_section(sets: list[RunSet], img: Path) -> list[str]:
    """The robustness tables and plots of the seeds that have a perturb.json."""
    sec = []
    for k, rs in enumerate(sets):
        for s in rs.seeds:
            table = _read_json(s.dir / "perturb.json") if (s.dir / "perturb.json").is_file() \
                else None
            if not table or not table.get("rows"):
                continue
            name = f"perturb_{k}_{s.seed}.png"
            plot_perturb(table, img / name)
            rows = "".join(
                f"<tr><td>{html.escape(str(r['perturbation']))}</td>"
                f"<td>{html.escape(str(r['value']))}</td><td>{_fmt(r['return_mean'])} ± "
                f"{_fmt(r['return_std'])}</td><td>{100 * r['return_vs_nominal']:+.1f}%</td></tr>"
                for r in table["rows"])
            sec += [f"<h3>{html.escape(rs.label)}, seed {s.seed}</h3>",
                    f'<figure><img src="img/{name}" alt="return under perturbations">'
                    f"<figcaption>{table['episodes']} episodes per variant, no further "
                    "training.</figcaption></figure>",
                    "<table><tr><th>perturbation</th><th>value</th><th>return</th>"
                    f"<th>vs nominal</th></tr>{rows}</table>"]
    if sec:
        sec.insert(0, "<h2>Zero-shot robustness</h2><p>From <code>tandem eval RUN --perturb "
                      "...</code>: the trained policy on env variants (noise, delay, model "
                      "error, env arguments).</p>")
    return sec


def record_gif(rs: RunSet, path: Path, max_frames: int = 150, fps: int = 30) -> str | None:
    """A GIF of the first seed's final deterministic policy; None if written, else why not."""
    if not rs.run or "config" not in rs.run:
        return "not a tandem run (no policy to replay)"
    if ":" in rs.env:
        return "JAX-native envs do not render"
    try:
        import imageio.v3 as iio
    except ImportError:
        return f"imageio is not installed ({EXTRA_HINT})"
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame (classic control) off-screen
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo off-screen
    import gymnasium as gym

    try:
        seed = rs.seeds[0]
        compiled = rs.run.get("path") == "compiled"
        policy = load(rs.path, seed=seed.seed) if compiled else load(seed.dir)
        env = gym.make(rs.env, render_mode="rgb_array", **(rs.run.get("env_kwargs") or {}))
        obs, _ = env.reset(seed=seed.seed + 12345)
        frames = [env.render()]
        while len(frames) < max_frames:
            obs, _, terminated, truncated, _ = env.step(policy.act(obs))
            frames.append(env.render())
            if terminated or truncated:
                break
        env.close()
        frames = [f for f in frames if f is not None]
        if not frames:
            return "the env returned no frames in rgb_array mode"
        video = np.stack(frames).astype(np.uint8)  # [T, H, W, 3]
        stride = max(1, int(np.ceil(max(video.shape[1:3]) / 320)))  # keep the file small
        iio.imwrite(path, video[:, ::stride, ::stride], duration=1000 / fps, loop=0)
    except Exception as exc:  # rendering depends on the machine (OpenGL, pygame)
        return f"the env could not render here ({type(exc).__name__}: {exc})"
    return None


# ============================================================================ page
def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"


def _normalized(rs: RunSet) -> str:
    """D4RL-normalised final scores of an offline run set, per reference (local, d4rl):
    IQM with its bootstrap interval; "" when its runs report none."""
    keys = sorted({k for s in rs.seeds for k in s.summary
                   if k.startswith("eval/normalized_score_")})
    parts = []
    for k in keys:
        v = np.array([s.summary[k] for s in rs.seeds if s.summary.get(k) is not None])
        if v.size:
            p, lo, hi = bootstrap_ci(v)
            parts.append(f"{k.rsplit('_', 1)[-1]} {_fmt(p)} [{_fmt(lo)}, {_fmt(hi)}]")
    return "; ".join(parts)


def _env_stats(sets: list[RunSet]) -> dict[str, tuple]:
    return {rs.label: bootstrap_ci(rs.scores) for rs in sets if rs.scores.size}


def _expand_sweeps(dirs: Sequence[str | Path], labels: Sequence[str | None]
                   ) -> list[tuple[Path, str | None]]:
    """A `tandem sweep` folder stands for its grid points, each a run set labelled by its
    values (prefixed with the folder's label, if one was given)."""
    out: list[tuple[Path, str | None]] = []
    for d, label in zip(dirs, labels):
        path = Path(d)
        if (path / "sweep.json").is_file() and not (path / "summary.json").is_file():
            record = _read_json(path / "sweep.json")
            points = list(dict.fromkeys(Path(r["dir"]).parent.name for r in record["runs"]
                                        if "summary" in r))
            if not points:
                raise ReportError(f"'{path}' is a sweep with no finished runs")
            out += [(path / p, f"{label or record['algo']} {p}") for p in points]
        else:
            out.append((path, label))
    return out


def write_report(dirs: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None,
                 title: str | None = None, video: bool = True) -> Path:
    """Write ``out/index.html`` and ``out/img/*`` for the run or sweep folders ``dirs``."""
    if not dirs:
        raise ReportError("give at least one run or sweep folder")
    if labels and len(labels) != len(dirs):
        raise ReportError(f"{len(labels)} labels for {len(dirs)} folders; give one per folder")
    sets = [load_run_set(d, label) for d, label in
            _expand_sweeps(dirs, labels or [None] * len(dirs))]
    keys = [(rs.label, rs.env) for rs in sets]
    if len(set(keys)) != len(keys) and not labels:  # e.g. two SAC configs on one env
        for rs in sets:
            rs.label = f"{rs.algo} ({rs.path.name})"
        keys = [(rs.label, rs.env) for rs in sets]
    if len(set(keys)) != len(keys):
        raise ReportError(f"two folders have the same label and env {keys}; give each its "
                          "own --label (one label may name folders of different envs)")
    out = Path(out)
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    envs = list(dict.fromkeys(rs.env for rs in sets))

    parts = [f"<h1>{html.escape(title or 'tandem report')}</h1>",
             f"<p class=meta>Generated {datetime.datetime.now().isoformat(timespec='seconds')}"
             f" from {len(sets)} run set(s) on {len(envs)} env(s). Scores are each seed's "
             "final deterministic evaluation return (mean over its episodes). IQM = mean of "
             "the middle 50% of seeds; intervals are 95% percentile bootstrap intervals "
             "(scipy.stats.bootstrap), stratified by env; curve bands are 95% Student-t "
             "intervals of the mean across seeds.</p>"]
    scored = any(_normalized(rs) for rs in sets)  # offline runs on datasets with references
    table = ["<table><tr><th>run set</th><th>algorithm</th><th>env</th><th>seeds</th>"
             "<th>steps</th><th>mean ± sd across seeds</th><th>IQM [95% CI]</th>"
             + ("<th>normalised score, IQM [95% CI]</th>" if scored else "") + "</tr>"]
    env_sections = []
    for e_i, env in enumerate(envs):
        on_env = [rs for rs in sets if rs.env == env]
        stats = _env_stats(on_env)
        for rs in on_env:
            sc = rs.scores
            steps = sorted({s.summary.get("steps") for s in rs.seeds} - {None})
            iq = stats.get(rs.label)
            table.append(
                f"<tr><td>{html.escape(rs.label)}</td><td>{html.escape(rs.algo)}</td>"
                f"<td>{html.escape(env)}</td><td>{len(rs.seeds)}</td>"
                f"<td>{', '.join(f'{s:,}' for s in steps) or 'n/a'}</td>"
                f"<td>{_fmt(sc.mean()) if sc.size else 'n/a'} ± "
                f"{_fmt(sc.std(ddof=1)) if sc.size > 1 else 'n/a'}</td>"
                f"<td>{_fmt(iq[0]) + f' [{_fmt(iq[1])}, {_fmt(iq[2])}]' if iq else 'n/a'}"
                "</td>" + (f"<td>{html.escape(_normalized(rs) or 'n/a')}</td>" if scored
                           else "") + "</tr>")
        sec = [f"<h2>{html.escape(env)}</h2>"]
        curve = f"curves_{e_i}.png"
        if plot_curves(on_env, env, img / curve):
            sec.append(f'<figure><img src="img/{curve}" alt="learning curves on '
                       f'{html.escape(env)}"><figcaption>Learning curves: mean across seeds '
                       "with a 95% confidence band.</figcaption></figure>")
        else:
            sec.append("<p>No learning curve: the runs logged fewer than two points.</p>")
        if stats:
            final = f"final_{e_i}.png"
            plot_final(on_env, env, stats, img / final)
            sec.append(f'<figure><img src="img/{final}" alt="final returns on '
                       f'{html.escape(env)}"><figcaption>Final evaluation return of every '
                       "seed; black: IQM with its 95% bootstrap interval.</figcaption></figure>")
            rows = "".join(
                f"<tr><td>{html.escape(rs.label)}</td><td>{s.seed}</td>"
                f"<td>{_fmt(s.final_mean)}</td><td>{len(s.final_returns)}</td></tr>"
                for rs in on_env for s in rs.seeds)
            sec.append("<details><summary>per-seed scores</summary><table><tr><th>run set"
                       "</th><th>seed</th><th>final eval return</th><th>episodes</th></tr>"
                       f"{rows}</table></details>")
        env_sections.append("\n".join(sec))
    table.append("</table>")
    parts += ["<h2>Summary</h2>", "\n".join(table), *env_sections]

    poi_rows = _poi_rows(sets)
    if poi_rows:
        plot_poi(poi_rows, img / "poi.png")
        rows = "".join(f"<tr><td>P({html.escape(r['x'])} &gt; {html.escape(r['y'])})</td>"
                       f"<td>{r['p']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]</td>"
                       f"<td>{html.escape(', '.join(r['envs']))}</td></tr>" for r in poi_rows)
        parts += ["<h2>Probability of improvement</h2>",
                  "<p>The probability that a seed of the first run set scores higher than a "
                  "seed of the second on the same env (ties count one half), averaged over "
                  "the envs both ran; above 0.5 with an interval that excludes 0.5 is a "
                  "difference the seeds support.</p>",
                  '<figure><img src="img/poi.png" alt="probability of improvement">'
                  "</figure>",
                  f"<table><tr><th>comparison</th><th>estimate [95% CI]</th><th>envs</th></tr>"
                  f"{rows}</table>"]

    parts += _perturb_section(sets, img)

    parts.append("<h2>Run sets</h2>")
    for k, rs in enumerate(sets):
        sec = [f"<h3>{html.escape(rs.label)}</h3>",
               f"<p>Folder <code>{html.escape(str(rs.path))}</code>, seeds "
               f"{', '.join(str(s.seed) for s in rs.seeds)}.</p>"]
        if video:
            gif = f"policy_{k}.gif"
            why_not = record_gif(rs, img / gif)
            if why_not is None:
                sec.append(f'<figure><img src="img/{gif}" alt="final policy of '
                           f'{html.escape(rs.label)}"><figcaption>Final deterministic policy, '
                           f"seed {rs.seeds[0].seed}.</figcaption></figure>")
            else:
                sec.append(f"<p>No video: {html.escape(why_not)}.</p>")
        first = rs.seeds[0].summary
        for name, blob in (("configuration", rs.run.get("config")),
                           ("library versions", rs.run.get("versions") or first.get("versions")),
                           ("machine", first.get("machine"))):
            if blob:
                sec.append(f"<details><summary>{name}</summary><pre>"
                           f"{html.escape(json.dumps(blob, indent=1, sort_keys=True))}</pre>"
                           "</details>")
        parts.append("\n".join(sec))

    page = (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title or 'tandem report')}</title><style>{_CSS}</style>"
            f"</head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    index = out / "index.html"
    index.write_text(page)
    log.info("report: %s", index)
    return index


def _poi_rows(sets: list[RunSet]) -> list[dict]:
    """P(label X > label Y) for every pair of labels, over the envs both ran; each env is a
    stratum of the bootstrap."""
    labels = list(dict.fromkeys(rs.label for rs in sets))
    by = {(rs.label, rs.env): rs.scores for rs in sets}
    rows = []
    for i, x in enumerate(labels):
        for y in labels[i + 1:]:
            envs = [e for (lab, e) in by if lab == x and by.get((y, e)) is not None
                    and by[(x, e)].size and by[(y, e)].size]
            if not envs:
                continue
            p, lo, hi = poi_ci([by[(x, e)] for e in envs], [by[(y, e)] for e in envs])
            rows.append({"x": x, "y": y, "p": p, "lo": lo, "hi": hi, "envs": envs})
    return rows


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .meta { color: #555; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 0.8em; }
"""
