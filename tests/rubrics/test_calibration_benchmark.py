import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "calibration.py"


def test_calibration_benchmark_runs_end_to_end(tmp_path):
    spec = importlib.util.spec_from_file_location("calibration_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    bench.main(["--domains", "toolgym/unitconv-v0", "--tasks", "30", "--no-tiny-llm", "--out", str(out), "--plot", str(png)])
    report = json.loads(out.read_text())
    result = report["results"]["toolgym/unitconv-v0"]
    assert result["episodes"] == 30
    assert result["by_variant"]["gold"]["state_success"] == 1.0
    assert result["by_variant"]["chaos"]["state_success"] in (0.0, None)
    agreement = {a["criterion"]: a for a in result["critic_calibration"]["agreement"]}
    assert set(agreement) == {"clarity", "judge_correct"}
    assert png.stat().st_size > 10_000
