"""The layers hold: no module imports from a layer above its own, no import cycles, and
``import vla_sim`` loads neither PyBullet nor torch.

Why not import-linter: vla_sim installs ``envs/``, ``agents/`` and ``assets/`` under its namespace
through setuptools' ``package-dir`` mapping, which grimp (import-linter's graph builder) cannot
see: it only walks the ``vla_sim/`` folder. This test reads every import statement (module level
and inside functions: a lazy import is still a dependency) with ``ast`` instead.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"vla_sim": ROOT / "vla_sim", "vla_sim.envs": ROOT / "envs",
                "vla_sim.agents": ROOT / "agents", "vla_sim.assets": ROOT / "assets"}

# Highest first. Packages on one line are siblings: neither may import the other. The trainers sit
# above the evaluator (their in-training success rate is the evaluator's), the evaluator above
# the policies it loads (docs/ARCHITECTURE.md argues the order).
LAYERS: list[tuple[str, ...]] = [
    ("vla_sim.cli",),
    ("vla_sim.pipeline",),
    ("vla_sim.agents.training",),
    ("vla_sim.evaluation",),
    ("vla_sim.agents.policies", "vla_sim.agents.experts"),
    ("vla_sim.data",),
    ("vla_sim.envs",),
    ("vla_sim.sim", "vla_sim.language"),
    ("vla_sim.randomization",),
    ("vla_sim.config",),
    ("vla_sim.utils", "vla_sim.configs", "vla_sim.assets"),
]
# Package faces that hold no code of their own belong to no layer.
FACES = ("vla_sim.agents",)
# The package's face may register the envs (plain data, see envs/registration.py) and nothing else.
ROOT_MAY_IMPORT = ("vla_sim.envs.registration",)


def iter_modules() -> dict[str, Path]:
    """Module name -> source file, for every module of the installed namespace."""
    modules: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            # a sub-package with its own mapping (vla_sim/envs does not exist, but be exact)
            if any(name.startswith(p + ".") or name == p for p in PACKAGE_DIRS
                   if p != package and p.startswith(package + ".")):
                continue
            modules[name] = path
    return modules


def imports_of(name: str, source: str, is_package: bool) -> set[str]:
    """Absolute names of the vla_sim modules that ``source`` imports (relative ones resolved)."""
    found: set[str] = set()
    base = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = ".".join(base[: len(base) - node.level + 1])
                module = f"{parent}.{node.module}" if node.module else parent
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    # ``import vla_sim`` registers the envs: it is a dependency on the envs layer
    return {"vla_sim.envs.registration" if m == "vla_sim" else m
            for m in found if m == "vla_sim" or m.startswith("vla_sim.")}


def layer_of(module: str) -> int | None:
    for i, group in enumerate(LAYERS):
        if any(module == g or module.startswith(g + ".") for g in group):
            return i
    return None


def sibling_of(module: str) -> str | None:
    for group in LAYERS:
        for g in group:
            if module == g or module.startswith(g + "."):
                return g
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower layer to a higher one, or between siblings of one layer."""
    bad = []
    for module, targets in sorted(graph.items()):
        if module == "vla_sim":
            bad += [f"vla_sim -> {t}" for t in sorted(targets)
                    if not any(t == ok or t.startswith(ok + ".") for ok in ROOT_MAY_IMPORT)]
            continue
        if module in FACES:
            continue
        here = layer_of(module)
        assert here is not None, f"{module} is in no layer: add its package to LAYERS"
        for target in sorted(targets):
            there = layer_of(target)
            if there is None:
                continue  # the bare package or a name that is not a module of ours
            same_layer_other = there == here and sibling_of(target) != sibling_of(module)
            if there < here or same_layer_other:
                bad.append(f"{module} -> {target}")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def build_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for name, path in modules.items():
        targets = imports_of(name, path.read_text(), path.name == "__init__.py")
        # "from pkg import mod" names a module; "from mod import func" names the module itself
        graph[name] = {t if t in modules else t.rsplit(".", 1)[0] for t in targets} - {name}
    return graph


def module_graph() -> dict[str, set[str]]:
    """Imports between modules, with package faces (``__init__``) resolved to the modules
    they re-export: an import of ``vla_sim.agents.policies`` counts as one of the package."""
    return build_graph(iter_modules())


def test_no_module_imports_from_a_higher_layer():
    bad = upward_imports(module_graph())
    assert not bad, "upward imports (see LAYERS in this file):\n" + "\n".join(bad)


def test_the_layer_check_catches_a_planted_upward_import():
    graph = module_graph()
    graph["vla_sim.sim.camera"] = graph["vla_sim.sim.camera"] | {"vla_sim.agents.policies"}
    graph["vla_sim.data.format"] = graph["vla_sim.data.format"] | {"vla_sim.cli.main"}
    assert upward_imports(graph)[-2:] or upward_imports(graph)
    bad = upward_imports(graph)
    assert "vla_sim.sim.camera -> vla_sim.agents.policies" in bad
    assert "vla_sim.data.format -> vla_sim.cli.main" in bad


def test_the_layer_check_reads_imports_inside_functions_and_relative_ones():
    source = "def f():\n    from ..cli import main\n    import vla_sim.agents.policies\n"
    found = imports_of("vla_sim.data.format", source, is_package=False)
    assert {"vla_sim.cli", "vla_sim.cli.main", "vla_sim.agents.policies"} <= found


def test_no_import_cycles_between_modules():
    graph = module_graph()
    # a package's __init__ re-exporting its own modules is not a cycle of design
    graph = {m: {t for t in ts if not (m.startswith(t + ".") and t in graph)}
             for m, ts in graph.items()}
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", ["vla_sim", "vla_sim.envs", "vla_sim.evaluation.stats",
                                    "vla_sim.data.reader", "vla_sim.language.instructions"])
def test_importing_light_modules_loads_neither_pybullet_nor_torch(module):
    code = (f"import sys, gymnasium, {module}; "
            "heavy = [m for m in ('pybullet', 'torch') if m in sys.modules]; "
            "assert not heavy, heavy; "
            "import vla_sim; assert 'vla_sim/Reach-v0' in gymnasium.registry")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
