"""metrics/ owns its judges: no module in it imports methods/ (the judged), and metrics never names a dataset."""

import ast
from pathlib import Path

import pytest

METRICS_DIR = Path(__file__).resolve().parents[1] / "metrics"


def imported_modules(source: str) -> set[str]:
    """Every module a source imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            found |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return found


def methods_imports(source: str) -> set[str]:
    return {m for m in imported_modules(source) if m == "methods" or m.startswith("methods.")}


def test_the_check_catches_an_import_of_methods():
    """The check itself can fail: each way of importing methods is caught, benchmark.core is not."""
    for line in (
        "from methods.vcn import VCN",
        "import methods.training",
        "def f():\n    from methods import get_method",
        "import importlib\nimportlib.import_module('methods.vcn')",
    ):
        assert methods_imports(line), line
    assert not methods_imports("from benchmark.core.seeds import derive_seed\nimport metrics.judges")


@pytest.mark.parametrize("path", sorted(METRICS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_metrics_module_imports_methods(path):
    assert not methods_imports(path.read_text()), f"{path.name} imports {methods_imports(path.read_text())}"


@pytest.mark.parametrize("path", sorted(METRICS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_metrics_never_branch_on_a_dataset_name(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            names = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
            assert not {"phantom", "openi", "mimic"} & set(names), f"{path.name}:{node.lineno} compares a dataset name"
