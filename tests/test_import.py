from __future__ import annotations

import subprocess
import sys


def test_import_toolgym_is_light():
    code = (
        "import sys, toolgym, toolgym.rollouts, toolgym.envs; "
        "heavy = [m for m in ('torch', 'ray', 'transformers', 'pyarrow', 'docker') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import toolgym pulled in: {out}"
