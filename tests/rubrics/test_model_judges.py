"""Judges backed by a real (tiny, random) model: locally with HFPolicy and over HTTP through
``toolgym serve`` + ``OpenAIPolicy``. A random model cannot write a valid judgement, so every
critic result must come out unscorable, with its reason counted, and never as a 0."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from rubric_helpers import ENV

from toolgym.policy import SamplingParams
from toolgym.rollouts import ScriptedPolicy, run_episodes, sample_tasks
from toolgym.rubrics import LLMJudge, PairwiseCritic, Rubric, rubric_for, score_episodes_sync, score_metrics
from toolgym.rubrics.metrics import COMPONENT_CALLS, COMPONENT_TOKENS, SCORE_UNSCORABLE_FRAC, UNSCORABLE_KIND

pytestmark = pytest.mark.slow
SAMPLING = SamplingParams(max_new_tokens=32, temperature=1.0)
JUDGE_KINDS = {"judge_unparseable", "judge_error", "judge_timeout"}


@pytest.fixture(scope="module")
def tiny_policy():
    from toolgym.policies.hf_policy import HFPolicy
    from toolgym.policies.models import cached_tiny_model

    return HFPolicy.from_pretrained(cached_tiny_model("kimi"))


@pytest.fixture(scope="module")
def group():
    tasks = sample_tasks(ENV, n=1, seed=3)
    return run_episodes(ENV, ScriptedPolicy.gold(tasks), tasks=tasks, group_size=2)


def _assert_counted(scores, critic: str) -> None:
    metrics = score_metrics(scores)
    for s in scores:
        assert s.total is None
        assert s.unscorable.kind in JUDGE_KINDS | {"no_comparisons"}
        assert s.criterion("state").value == 1.0  # the verifiable part is unaffected
    assert metrics[SCORE_UNSCORABLE_FRAC] == 1.0
    counted = sum(v for k, v in metrics.items() if k.startswith("score/unscorable/"))
    assert counted == len(scores)
    assert metrics[COMPONENT_CALLS.format(name=f"critic:{critic}")] >= len(scores)


def test_tiny_local_model_as_judge(tiny_policy, group):
    judge = LLMJudge(tiny_policy, retries=1, sampling=SAMPLING, max_transcript_chars=600)
    scores = score_episodes_sync(group, rubric_for(ENV), critics=[judge])
    _assert_counted(scores, "judge")
    assert score_metrics(scores)[UNSCORABLE_KIND.format(kind="judge_unparseable")] == len(scores)
    assert score_metrics(scores)[COMPONENT_TOKENS.format(name="critic:judge")] > 0  # token-faithful cost


def test_policy_model_as_pairwise_critic(tiny_policy, group):
    pairwise_rubric = Rubric.model_validate(
        {
            "name": "pairwise",
            "criteria": [
                {"id": "state", "description": "d", "source": {"type": "check", "check": "final_state_matches_gold"}},
                {"id": "better", "description": "The better answer.", "source": {"type": "critic", "critic": "self"}},
            ],
        }
    )
    critic = PairwiseCritic(tiny_policy, name="self", retries=0, sampling=SAMPLING, max_transcript_chars=400)
    scores = score_episodes_sync(group, pairwise_rubric, critics=[critic])
    _assert_counted(scores, "self")
    assert "judge_unparseable x2" in scores[0].criterion("better").unscorable.message


def test_judge_over_http_through_toolgym_serve(tiny_policy, group, tmp_path):
    from typer.testing import CliRunner

    from toolgym.cli import app
    from toolgym.policies.openai_policy import OpenAIPolicy
    from toolgym.policies.serve import serve_in_thread
    from toolgym.rollouts import save_episodes

    path = save_episodes(group, tmp_path / "group.jsonl")
    with serve_in_thread(tiny_policy) as url:
        endpoint = OpenAIPolicy(url, "tiny", max_retries=0, timeout_s=60)
        judge = LLMJudge(endpoint, retries=0, sampling=SAMPLING, max_transcript_chars=600)
        scores = score_episodes_sync(group, rubric_for(ENV), critics=[judge])
        cli = CliRunner().invoke(app, ["score", str(path), "--judge-url", url, "--judge-max-tokens", "16", "--json", str(tmp_path / "r.json")], env={"COLUMNS": "200"})
    _assert_counted(scores, "judge")
    assert cli.exit_code == 0, cli.output
    assert "unscorable 100.0%" in cli.output
    assert "judge_unparseable 2" in cli.output

    dead = LLMJudge(OpenAIPolicy(url, "tiny", max_retries=0, timeout_s=2), retries=0)  # the server is gone now
    gone = score_episodes_sync(group[:1], rubric_for(ENV), critics=[dead])[0]
    assert gone.unscorable.kind == "judge_error"
    assert "endpoint_error" in gone.criterion("clarity").unscorable.message
