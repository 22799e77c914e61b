import subprocess
import sys


def test_rubrics_import_nothing_heavy_and_nothing_from_trainers():
    code = (
        "import sys, toolgym.rubrics, toolgym.rubrics.report, toolgym.rubrics.calibration; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'ray', 'sklearn', 'scipy', 'matplotlib')"
        " or m.startswith('toolgym.trainers')]; print(','.join(sorted(bad)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import toolgym.rubrics pulled in: {out}"
