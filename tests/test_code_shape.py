"""The product's code stays readable: no function a reader cannot see whole."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# What ships or what an operator runs: the function, the program, the CLI, the demo.
PRODUCT = ("function", "components", "consul_backup", "testbed/demo.py", "testbed/sandbox.py")
MAX_LINES = 60


def functions_over(limit: int, path: Path) -> list[str]:
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > limit:
                long.append(f"{path.relative_to(REPO)}:{node.name} ({lines} lines)")
    return long


@pytest.mark.parametrize("place", PRODUCT)
def test_no_product_function_is_longer_than_60_lines(place):
    root = REPO / place
    paths = [root] if root.is_file() else sorted(root.rglob("*.py"))
    assert paths
    assert [f for path in paths for f in functions_over(MAX_LINES, path)] == []
