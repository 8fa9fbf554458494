"""The package's layers, lowest first, and a check that every import points down (or sideways within a layer).

    benchmark.core      plain utilities: errors, io, seeds, checkpoints, distributed, resize, cache, sheets
    benchmark.data      reports, text, images, datasets, the phantom renderer
    methods | metrics   the judged and the judges, side by side: neither imports the other
    benchmark.pipeline  configuration, runs, results, leaderboards, check, bench
    benchmark.commands  the helper sub-commands (data, ls, weights, judges) and what commands share
    cli                 parses, calls one pipeline function, prints

Imports inside functions count too: a cycle hidden in a function is still a cycle.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "benchmark.core": 0,
    "benchmark.data": 1,
    "methods": 2,
    "metrics": 2,
    "benchmark.pipeline": 3,
    "benchmark.commands": 4,
    "cli": 5,
}


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to (the longest matching prefix), or None for outside code."""
    matches = [name for name in LAYERS if module == name or module.startswith(name + ".")]
    if module == "benchmark":
        return "benchmark"  # the package's docstring only
    return max(matches, key=len) if matches else None


def imports_of(path: Path, source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source, filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from benchmark.core import cache` imports benchmark.core.cache: count the names as submodules
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):  # importlib.import_module("methods.vcn") is an import all the same
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            found += [(node.lineno, name) for name in names]
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def wrong_arrows(sources: dict[Path, str]) -> list[str]:
    """Every import in ``sources`` (path -> text) that points up the layers, or across between methods and
    metrics, as 'file:line who imports what'."""
    wrong = []
    for path, text in sources.items():
        source = layer_of(module_name(path))
        for line, target_module in imports_of(path, text):
            target = layer_of(target_module)
            if target is None or target == source:
                continue
            if source == "benchmark" or target == "benchmark":
                wrong.append(f"{path.relative_to(ROOT)}:{line} benchmark/__init__ takes part in no import")
            elif LAYERS[target] >= LAYERS[source]:  # equal: methods and metrics
                wrong.append(f"{path.relative_to(ROOT)}:{line} {source} imports {target_module} ({target})")
    return wrong


def project_sources() -> dict[Path, str]:
    files = [ROOT / "cli.py"]
    for package in ("benchmark", "methods", "metrics"):
        files += sorted((ROOT / package).rglob("*.py"))
    return {path: path.read_text() for path in files}


def test_every_import_points_down_the_layers():
    sources = project_sources()
    assert len(sources) > 40  # the walk found the packages
    assert wrong_arrows(sources) == []


@pytest.mark.parametrize(
    ("where", "line", "expected"),
    [
        ("metrics/extra.py", "from methods.vcn import VCN", "metrics imports methods.vcn.VCN (methods)"),
        ("methods/extra.py", "import metrics", "methods imports metrics (metrics)"),
        ("benchmark/core/extra.py", "from benchmark.data import text", "benchmark.core imports benchmark.data.text"),
        ("benchmark/data/extra.py", "    from benchmark.pipeline.config import load_config", "imports benchmark"),
        ("methods/extra.py", "from benchmark.pipeline import runner", "methods imports benchmark.pipeline.runner"),
        ("benchmark/pipeline/extra.py", "from benchmark.commands.common import console", "imports benchmark.commands"),
        ("benchmark/commands/extra.py", "from cli import app", "benchmark.commands imports cli.app (cli)"),
        ("metrics/extra.py", "import importlib\nimportlib.import_module('methods.vcn')", "metrics imports methods.vcn"),
    ],
)
def test_the_check_fails_on_an_arrow_against_the_direction(where, line, expected):
    source = f"def f():\n{line}\n" if line.startswith(" ") else f"{line}\n"
    wrong = wrong_arrows({ROOT / where: source})
    assert len(wrong) == 1 and expected in wrong[0]


def type_checking_lines(source: str) -> set[int]:
    """The lines inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    return {
        line
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for line in range(node.lineno, node.end_lineno + 1)
    }


def import_cycle(sources: dict[Path, str], package: str) -> list[str]:
    """One import cycle among ``package``'s modules (function-local imports included; those under ``if
    TYPE_CHECKING:`` run never), as the list of modules around it, or [] when there is none. ``from metrics
    import weights`` names the module metrics.weights; ``from metrics.base import Unavailable`` metrics.base."""
    modules = {module_name(path): path for path in sources if module_name(path).startswith(package)}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        static = type_checking_lines(sources[path])
        for line, target in imports_of(path, sources[path]):
            if line in static:
                continue
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        edges[name] = targets
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str]:
        state[name] = 1
        for target in sorted(edges[name]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [name, target] if target in path else [name, target]
            if target not in state and (found := visit(target, path + [name])):
                return found
        state[name] = 2
        return []

    for name in sorted(modules):
        if name not in state and (found := visit(name, [])):
            return found
    return []


def test_no_import_cycle_among_the_metrics_modules():
    """metrics.fidelity and metrics.weights imported each other (the CheXNet loader, the metrics' weights
    users): the loader is metrics.chexnet now, the users metrics.registry.weights_users."""
    assert import_cycle(project_sources(), "metrics") == []


def test_the_cycle_check_finds_a_cycle_hidden_in_a_function():
    sources = {
        ROOT / "metrics/a.py": "from metrics import b\n",
        ROOT / "metrics/b.py": "def f():\n    import metrics.a\n",
    }
    assert import_cycle(sources, "metrics") == ["metrics.a", "metrics.b", "metrics.a"]
