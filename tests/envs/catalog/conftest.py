"""Fixtures of the catalog tests."""

from __future__ import annotations

import sys
from pathlib import Path

# The suite runs with --import-mode=importlib, where test modules cannot import their
# neighbours; the shared helpers module (api_domains) is made importable here, once.
sys.path.insert(0, str(Path(__file__).parent))
