"""The dependency rule: envs <- policies <- rollouts <- rubrics <- trainers; each imports only leftwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent / "toolgym"
ORDER = ["envs", "policies", "rollouts", "rubrics", "trainers"]


def imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "toolgym" and len(parts) > 1 and parts[1] in ORDER:
                layers.add(parts[1])
    return layers


@pytest.mark.parametrize("layer", ORDER)
def test_layers_import_only_leftwards(layer):
    allowed = set(ORDER[: ORDER.index(layer) + 1])
    offenders = {
        str(p.relative_to(ROOT)): sorted(imported_layers(p) - allowed)
        for p in (ROOT / layer).rglob("*.py")
        if imported_layers(p) - allowed
    }
    assert offenders == {}, f"{layer} must not import {offenders}"
