"""The demo recipe end to end in a tiny setting: four stages measured, RL only on the new family,
the control given at least RL's tokens on demonstrated families only, JSON and curve saved."""

from __future__ import annotations

import json

from toolgym.trainers.demo import STAGES, DemoConfig, _Demo, plot_curve, run_demo, save_result
from toolgym.trainers.demo_tasks import RL_FAMILY, SFT_FAMILIES
from toolgym.trainers.sft import SFTConfig

TINY = dict(sft_tasks=4, heldout_tasks=3, heldout_demo_tasks=1, rl_iterations=1, rl_tasks_per_iteration=2, group_size=2,
            max_new_tokens=24, rl_minibatch=4, threads=1, sft=SFTConfig(lr=1e-3, batch_size=4, epochs=1, log_every=1))


def test_recipe_runs_every_stage_from_the_shipped_base(tmp_path):
    lines: list[str] = []
    progress: list[tuple[str, float, float]] = []
    result = run_demo(DemoConfig(**TINY), log=lines.append, progress=lambda *a: progress.append(a))
    assert tuple(result.stages) == STAGES
    for stage in result.stages.values():
        assert all(0.0 <= stage[k] <= 1.0 for k in ("success", "score", "demo_success", "demo_score"))
    assert result.sft["steps"] == 2 and result.sft["rows"] == 4 * len(SFT_FAMILIES)
    assert len(result.rl_history) == 1 and result.rl_history[0]["train/episodes"] == 4
    rl_tokens = result.control["rl_tokens"]
    assert rl_tokens["rollout"] > 0 and result.control["token_budget"] == rl_tokens["rollout"] + rl_tokens["update"]
    assert result.control["tokens"] >= result.control["token_budget"]  # the control gets at least RL's compute
    assert {p[0] for p in progress} == {"sft", "rl", "control"} and all(done <= total for _, done, total in progress)
    assert any(line.startswith("after_rl: new family") for line in lines)
    saved = json.loads(save_result(result, tmp_path / "demo.json").read_text())
    assert saved["stages"] == result.stages
    assert plot_curve(result, tmp_path / "demo.png").stat().st_size > 1000


def test_rl_sees_only_the_new_family_and_sft_never_does():
    demo = _Demo(DemoConfig(**{**TINY, "rl_iterations": 3}), log=lambda _: None, progress=None)
    try:
        rl = demo.trainer.sampler.tasks(0) + demo.trainer.sampler.tasks(1) + demo.trainer.sampler.tasks(2)
        assert {t.metadata["family"] for t in rl} == {RL_FAMILY}
        assert {t.metadata["family"] for t in demo.sft_tasks + demo.control_tasks} == set(SFT_FAMILIES)
        assert not {t.id for t in demo.sft_tasks} & {t.id for t in demo.control_tasks}  # the control gets fresh rows
        trained = {t.instruction for t in rl + demo.sft_tasks + demo.control_tasks}
        assert not trained & {t.instruction for t in demo.heldout + demo.heldout_demo}
        assert {t.metadata["family"] for t in demo.heldout} == {RL_FAMILY}
    finally:
        demo.trainer.close()
