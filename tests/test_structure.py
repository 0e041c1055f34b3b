"""The shape of the code (issue 14): imports point one way, the run layer owns the run files,
and the entry points import only what they need."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tandem"

# Layers, lowest first: a module may import its own layer and the ones listed here.
BASE = {"tandem", "tandem.errors", "tandem.config", "tandem.version"}
ALLOWED = {
    "core": {"core"},
    "envs": {"core", "envs"},
    "algos": {"core", "algos"},
    # the run layer imports neither JAX nor Gymnasium; of core only the NumPy spaces
    "run": {"run", "tandem.core.spaces"},
    "drivers": {"core", "envs", "algos", "run", "drivers"},
    # the deploy runtime: NumPy and onnxruntime, of core only the NumPy spaces
    "deploy": {"tandem.core.spaces"},
    "api": {"core", "envs", "algos", "run", "drivers"},
    "apps": {"core", "envs", "algos", "run", "drivers", "api"},
    "cli": {"core", "envs", "algos", "run", "drivers", "api", "apps"},
}


def _layer(module: str) -> str:
    if module in BASE:
        return "base"
    part = module.split(".")[1]
    if part in ("host", "compiled", "distributed", "offline", "export"):
        return "drivers"
    if part in ("tune", "report", "sweep", "datasets"):
        return "apps"
    return part


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, module: str, known: set) -> set[str]:
    """tandem modules imported by ``path`` (module level and inside functions)."""
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith("tandem"):
                found.add(name)
    return found


def test_imports_point_one_way_and_have_no_cycles():
    mods = _modules()
    graph = {m: _imports(p, m, set(mods)) for m, p in mods.items()}
    bad = []
    for m, targets in graph.items():
        layer = _layer(m)
        for t in targets:
            tl = _layer(t)
            if tl == "base" or tl == layer or t in ALLOWED.get(layer, set()) or \
                    tl in ALLOWED.get(layer, set()):
                continue
            bad.append(f"{m} ({layer}) -> {t} ({tl})")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))
    # no cycles between files
    seen, stack, cycles = {}, [], []

    def visit(m):
        seen[m] = "open"
        stack.append(m)
        for t in graph[m]:
            if seen.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in seen:
                visit(t)
        stack.pop()
        seen[m] = "done"
    for m in graph:
        if m not in seen:
            visit(m)
    assert not cycles, cycles


def test_the_base_modules_import_nothing_above_them():
    mods = _modules()
    for m in ("tandem.errors", "tandem.config", "tandem.version", "tandem"):
        extra = _imports(mods[m], m, set(mods)) - BASE
        assert not extra, (m, extra)


# the low-level writers of run files; outside run/, code writes through run.folder's
# functions (record, summary, eval results) or the session
WRITERS = {"save_checkpoint", "CSVSink", "TensorBoardSink", "SegmentWriter", "EventFileWriter",
           "atomic_write_text", "st_save"}


def test_only_the_run_layer_writes_run_files():
    """No code outside run/ writes summary.json, metric rows or checkpoint folders: the
    writers are defined in run/, and outside it nothing calls the low-level ones or writes a
    file next to a run file's name."""
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("run/"):
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if name in WRITERS:
                    offenders.append(f"{rel}: calls {name}")
        for line in text.splitlines():  # a write next to a run file's name
            if re.search(r"metrics\.csv|summary\.json|checkpoints|step_", line) and \
                    re.search(r"write_text|write_bytes|open\([^)]*['\"][wa]|rename|replace\(", line):
                offenders.append(f"{rel}: {line.strip()}")
    assert not offenders, offenders


def _fresh_modules(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=120,
                         env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


HEAVY = ("jax", "flax", "optax", "torch", "ray")


def test_import_tandem_imports_no_numerical_library():
    loaded = _fresh_modules("import tandem")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY + ("gymnasium", "numpy")]


@pytest.mark.parametrize("argv, needed", [
    (["--help"], set()),
    (["config", "sac"], {"tandem.algos.sac"}),
    (["config", "ppo"], {"tandem.algos.ppo"}),
])
def test_the_command_line_imports_what_it_needs(argv, needed):
    code = ("import sys\nfrom tandem.cli import main\n"
            "try:\n    main(%r)\nexcept SystemExit:\n    pass" % argv)
    loaded = _fresh_modules(code)
    assert not [m for m in loaded if m.split(".")[0] == "torch"]
    algos = {m for m in loaded if m.startswith("tandem.algos.")}
    assert algos == needed, algos
