"""Importing toolgym (and its layers) loads nothing heavy: those load when something needs them."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "ray", "transformers", "pyarrow", "docker", "sklearn", "scipy", "matplotlib")


@pytest.mark.parametrize(
    "modules,forbidden_prefixes",
    [
        (["toolgym", "toolgym.envs", "toolgym.rollouts"], ()),
        (["toolgym.rubrics", "toolgym.rubrics.report", "toolgym.rubrics.calibration"], ("toolgym.trainers",)),
    ],
)
def test_imports_are_light(modules, forbidden_prefixes):
    code = (
        f"import sys, {', '.join(modules)}; "
        f"bad = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m.startswith({tuple(forbidden_prefixes)!r})]; "
        "print(','.join(sorted(bad)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing {modules} pulled in: {out}"
