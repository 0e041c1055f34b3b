"""`tandem report`: reads sweeps (tandem's and a peer library's layout), writes one HTML page
whose every image loads in a real headless Chromium with no console errors."""

import csv
import json
import shutil
import subprocess

import numpy as np
import pytest

from tandem import TD3Config, train
from tandem.cli import main
from tandem.report import ReportError, load_run_set, write_report
from tests.conftest import TINY

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CFG = TINY.replace(eval_every=100, log_every=50, eval_episodes=1)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    train(CFG, "Pendulum-v1", steps=300, seeds="0-1", out=root / "sac", progress=False)
    td3 = TD3Config(**{k: getattr(CFG, k) for k in (
        "hidden_sizes", "batch_size", "buffer_size", "learning_starts", "eval_episodes",
        "log_every", "checkpoint_every", "eval_every")})
    train(td3, "Pendulum-v1", steps=300, seeds="0-1", out=root / "td3", progress=False)
    return root


def _peer_sweep(root, scores):
    """A folder in the layout a peer-library benchmark writes (no config.json, no policy)."""
    for seed, score in enumerate(scores):
        d = root / f"seed_{seed}"
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps(
            {"algo": "peer-sac", "env": "Pendulum-v1", "seed": seed, "steps": 300,
             "eval/return_mean": score, "eval/returns": [score]}))
        with open(d / "metrics.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["step", "name", "value"])
            for step in (100, 200, 300):
                w.writerow([step, "eval/return_mean", score * step / 300])
    return root


def test_run_sets_read_tandem_and_peer_folders(sweeps, tmp_path):
    rs = load_run_set(sweeps / "sac")
    assert (rs.algo, rs.env, [s.seed for s in rs.seeds]) == ("sac", "Pendulum-v1", [0, 1])
    assert rs.curve_metric() == "eval/return_mean"
    steps, _ = rs.seeds[0].curves["eval/return_mean"]
    assert steps.tolist() == [100, 200, 300]
    single = load_run_set(sweeps / "sac" / "seed_1")  # one run folder is a set of one seed
    assert [s.seed for s in single.seeds] == [1]
    peer = load_run_set(_peer_sweep(tmp_path / "peer", [-900.0, -1000.0, -1100.0]))
    assert peer.algo == "peer-sac" and peer.scores.tolist() == [-900.0, -1000.0, -1100.0]
    with pytest.raises(ReportError, match="holds no runs"):
        load_run_set(tmp_path)
    with pytest.raises(ReportError, match="not a folder"):
        load_run_set(tmp_path / "missing")


def test_report_renders_in_headless_chromium(sweeps, tmp_path):
    from playwright.sync_api import sync_playwright

    peer = _peer_sweep(tmp_path / "peer", [-900.0, -1000.0, -1100.0])
    assert main(["report", str(sweeps / "sac"), str(sweeps / "td3"), str(peer),
                 "--out", str(tmp_path / "rep"), "--title", "SAC vs TD3 <test>"]) == 0
    index = tmp_path / "rep" / "index.html"
    page_html = index.read_text()
    assert "SAC vs TD3 &lt;test&gt;" in page_html  # escaped
    for needle in ("IQM", "P(sac &gt; td3)", "P(sac &gt; peer-sac)", "library versions",
                   "configuration", "machine"):
        assert needle in page_html, needle
    # Pendulum renders (pygame off-screen): GIFs for the tandem runs; the peer has no policy.
    assert (tmp_path / "rep" / "img" / "policy_0.gif").stat().st_size > 1000
    assert "No video: not a tandem run" in page_html

    assert shutil.which(CHROMIUM), "Chromium is missing: run `bash scripts/setup.sh`"
    errors, failed = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(index.as_uri(), wait_until="load")
        images = page.evaluate("""() => Array.from(document.images).map(
            i => [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight])""")
        shot = tmp_path / "shot.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == [] and failed == []
    srcs = [src for src, *_ in images]
    assert {"img/curves_0.png", "img/final_0.png", "img/poi.png", "img/policy_0.gif",
            "img/policy_1.gif"} <= set(srcs)
    assert all(ok and w > 100 and h > 50 for _, ok, w, h in images), images

    # The screenshot shows the page: plot colours (the first run set's blue, the second's
    # red) are on it, so the images were painted, not just fetched.
    import imageio.v3 as iio
    px = iio.imread(shot)[..., :3].reshape(-1, 3).astype(int)
    assert px.shape[0] > 1100 * 900
    blue = np.abs(px - [31, 119, 180]).sum(axis=1) < 30
    red = np.abs(px - [214, 39, 40]).sum(axis=1) < 30
    assert blue.sum() > 200 and red.sum() > 200


def test_report_statistics_match_the_stats_module(sweeps, tmp_path):
    from tandem.core.stats import bootstrap_ci
    index = write_report([sweeps / "sac"], tmp_path / "r", video=False)
    rs = load_run_set(sweeps / "sac")
    p, lo, hi = bootstrap_ci(rs.scores)
    text = index.read_text()
    assert f"{p:,.1f} [{lo:,.1f}, {hi:,.1f}]" in text
    assert "No video" not in text and "poi.png" not in text  # one run set: no comparison


def test_report_errors(sweeps, tmp_path, capsys):
    assert main(["report", str(sweeps / "sac"), "--label", "a", "--label", "b"]) == 2
    assert "2 labels for 1 folders" in capsys.readouterr().err
    assert main(["report", str(sweeps / "sac"), str(sweeps / "sac"), "--label", "x",
                 "--label", "x", "--out", str(tmp_path / "r")]) == 2
    assert "same label and env" in capsys.readouterr().err
    (tmp_path / "half" / "seed_0").mkdir(parents=True)
    assert main(["report", str(tmp_path / "half"), "--out", str(tmp_path / "r")]) == 2
    assert "has no summary.json" in capsys.readouterr().err


def test_chromium_binary_is_the_one_setup_installs():
    out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Chromium" in out.stdout


@pytest.mark.parametrize("n_seeds", [3, 5, 10])
def test_the_strip_plot_legend_covers_no_point(n_seeds):
    from tandem.report import RunSet, SeedResult, final_figure
    rng = np.random.default_rng(n_seeds)
    sets = []
    for k, label in enumerate(("tandem SAC", "SB3 SAC")):
        seeds = [SeedResult(s, None, {"eval/return_mean": float(v)}, {})
                 for s, v in enumerate(rng.normal(-200 + 50 * k, 60, n_seeds))]
        sets.append(RunSet(label, None, "sac", "Pendulum-v1", {}, seeds))
    stats = {rs.label: (float(np.mean(rs.scores)), float(rs.scores.min()),
                        float(rs.scores.max())) for rs in sets}
    fig = final_figure(sets, "Pendulum-v1", stats)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    title = fig._suptitle.get_window_extent()
    assert not legend.overlaps(title)
    points = np.concatenate([c.get_offsets() for c in ax.collections if c.get_offsets().size])
    assert len(points) >= 2 * n_seeds
    for x, y in ax.transData.transform(points):
        assert not legend.contains(x, y), (x, y)
    assert not legend.overlaps(ax.get_window_extent())  # above the axes, not on them
