"""The simulator tests share ``sim_helpers``; the suite runs with --import-mode=importlib, so its
folder is put on the path here, once."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
