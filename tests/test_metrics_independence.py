"""metrics/ never branches on a dataset name: what a dataset means for a judge (its finding labels) comes in
with the images. (That metrics/ imports nothing from methods/ is kept by tests/test_layers_imports.py.)"""

import ast
from pathlib import Path

import pytest

METRICS_DIR = Path(__file__).resolve().parents[1] / "metrics"


@pytest.mark.parametrize("path", sorted(METRICS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_metrics_never_branch_on_a_dataset_name(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            names = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
            assert not {"phantom", "openi", "mimic"} & set(names), f"{path.name}:{node.lineno} compares a dataset name"
