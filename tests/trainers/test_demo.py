"""The demo recipe end to end in a tiny setting: four rows measured (base, SFT, RL, control), RL through GRPOTrainer, JSON saved."""

from __future__ import annotations

import json

from toolgym.trainers.demo import DemoConfig, run_demo, save_result
from toolgym.trainers.sft import SFTConfig


def test_recipe_runs_every_stage_from_the_shipped_base(tmp_path):
    cfg = DemoConfig(sft_tasks=8, heldout_tasks=4, shown_heldout_tasks=2, control_steps=1, rl_iterations=1, rl_tasks_per_iteration=2,
                     group_size=2, max_new_tokens=24, rl_minibatch=4, sft=SFTConfig(lr=1e-3, batch_size=4, epochs=1, log_every=1))
    lines: list[str] = []
    result = run_demo(cfg, log=lines.append)
    assert set(result.stages) == {"before_sft", "after_sft", "after_rl", "control"}
    assert all(0.0 <= s[k] <= 1.0 for s in result.stages.values() for k in ("success", "score", "shown_success"))
    assert result.sft["steps"] == 2 and result.sft["rows"] == 8
    assert len(result.rl_history) == 1 and result.rl_history[0]["train/episodes"] == 4
    assert any(line.startswith("after_rl: held-out success on long tasks") for line in lines)
    assert any(line.startswith("control: held-out success on long tasks") for line in lines)
    assert result.seconds["control"] > 0
    saved = json.loads(save_result(result, tmp_path / "demo.json").read_text())
    assert saved["stages"] == result.stages


def test_the_plot_draws_every_stage_and_the_reward_curve(tmp_path):
    from toolgym.trainers.demo import DemoResult, plot_result

    result = DemoResult(config={}, stages={name: {"success": 0.1 * i, "score": 0.2, "shown_success": 0.5}
                                           for i, name in enumerate(("before_sft", "after_sft", "after_rl", "control"))},
                        rl_history=[{"train/reward_mean": 0.1}, {"train/reward_mean": 0.4}])
    png = plot_result(result, tmp_path / "sub" / "demo.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
