import pytest
from rubric_helpers import call, gold_episode, play

from toolgym.policies.scripted import gold_script
from toolgym.rollouts.episode import Failure, TurnRecord
from toolgym.rubrics import Rubric, compose, score_episodes_sync
from toolgym.rubrics.penalties import apply_penalty
from toolgym.rubrics.rubric import Penalty
from toolgym.rubrics.score import CriterionScore, PenaltyScore, Unscorable


def crit(cid, value=None, weight=1.0, gate=None, unscorable=None, applicable=True):
    reason = Unscorable(kind=unscorable, message="broke") if unscorable else None
    return CriterionScore(id=cid, kind="core", source="check:x", weight=weight, value=value, gate=gate, unscorable=reason, applicable=applicable)


def test_weighted_mean_then_penalties_clipped_to_the_unit_interval():
    score = compose("r", "e", [crit("a", 1.0, weight=3), crit("b", 0.0, weight=1)], [PenaltyScore(id="p", kind="excess_turns", amount=0.25)])
    assert score.weighted == 0.75
    assert score.penalty == 0.25
    assert score.total == 0.5
    assert compose("r", "e", [crit("a", 0.1)], [PenaltyScore(id="p", kind="k", amount=0.5)]).total == 0.0


def test_a_failed_gate_is_a_real_zero():
    score = compose("r", "e", [crit("format", 0.2, weight=0, gate=0.5), crit("a", 1.0)])
    assert score.total == 0.0
    assert score.gated_by == "format"
    assert score.scorable


def test_an_undecidable_gate_makes_the_total_unscorable_unless_another_gate_already_failed():
    score = compose("r", "e", [crit("format", gate=0.5, unscorable="judge_timeout"), crit("a", 1.0)])
    assert score.total is None
    assert score.unscorable.kind == "judge_timeout"
    assert "gate format unscorable" in score.unscorable.message
    both = compose("r", "e", [crit("g1", gate=0.5, unscorable="judge_timeout"), crit("g2", 0.0, gate=0.5), crit("a", 1.0)])
    assert (both.total, both.gated_by) == (0.0, "g2")


def test_an_unscorable_weighted_criterion_is_never_a_silent_zero():
    items = [crit("a", 1.0), crit("judge", unscorable="judge_unparseable")]
    strict = compose("r", "e", items)
    assert strict.total is None and strict.unscorable.kind == "judge_unparseable"
    lenient = compose("r", "e", items, on_unscorable="renormalize")
    assert lenient.total == 1.0
    assert lenient.criterion("judge").unscorable is not None  # still visible in the breakdown


def test_not_applicable_criteria_drop_out_of_the_mean():
    score = compose("r", "e", [crit("a", 0.5), crit("b", None, applicable=False)])
    assert score.total == 0.5


def test_nothing_scorable_is_unscorable_and_gates_only_is_full_marks():
    assert compose("r", "e", [crit("a", applicable=False)]).unscorable.kind == "missing_data"
    assert compose("r", "e", [crit("g", 1.0, weight=0, gate=1.0)]).total == 1.0
    with pytest.raises(KeyError, match="has no criterion 'zzz'"):
        compose("r", "e", [crit("a", 1.0)]).criterion("zzz")


def _rubric(**extra):
    return Rubric.model_validate(
        {
            "name": "r",
            "criteria": [
                {"id": "format", "description": "d", "weight": 0, "gate": 0.5, "source": {"type": "check", "check": "well_formed_call_rate"}},
                {"id": "state", "description": "d", "source": {"type": "check", "check": "final_state_matches_gold"}},
            ],
            **extra,
        }
    )


def test_gate_through_the_scorer(task):
    chaos = play(task, ["<tool_call>{bad</tool_call>", "<tool_call>{bad</tool_call>", "done"])
    gold = gold_episode(task)
    bad, good = score_episodes_sync([chaos, gold], _rubric())
    assert (bad.total, bad.gated_by) == (0.0, "format")
    assert good.total == 1.0


def test_penalties_for_turns_calls_and_tokens(task):
    gold = gold_episode(task)
    padded = play(task, [call("list_units")] * 4 + gold_script(task))
    rubric = _rubric(penalties=[{"id": "calls", "kind": "excess_calls_over_gold", "limit": 1, "per_unit": 0.1, "max": 0.25}])
    assert score_episodes_sync([gold], rubric)[0].total == 1.0
    score = score_episodes_sync([padded], rubric)[0]
    assert score.penalties[0].amount == 0.25  # 3 over the limit, capped
    assert score.total == 0.75
    turns = apply_penalty(Penalty(id="t", kind="excess_turns", limit=3, per_unit=0.1), gold)
    assert turns.amount == pytest.approx(0.1 * (len(gold.turns) - 3))
    assert "not measured" in apply_penalty(Penalty(id="k", kind="token_budget", limit=1, per_unit=0.1), gold).detail
    with_tokens = gold.model_copy(update={"turns": [TurnRecord(text="x", token_ids=list(range(30)))] * 2})
    assert apply_penalty(Penalty(id="k", kind="token_budget", limit=50, per_unit=0.01), with_tokens).amount == pytest.approx(0.1)


def test_infrastructure_failures_are_unscorable_without_running_checks(task):
    failed = gold_episode(task).model_copy(update={"failure": Failure(boundary="env", kind="Crash", message="boom", attempts=2)})
    score = score_episodes_sync([failed], _rubric())[0]
    assert score.total is None
    assert score.unscorable.kind == "infrastructure"
    assert "env failure (Crash) after 2 attempt(s): boom" in score.unscorable.message
    assert score.criteria == []


def test_a_crashing_check_is_check_error_not_zero(task, monkeypatch):
    from toolgym.rubrics.checks import registry

    def broken(task, episode, env=None):
        raise RuntimeError("bug in check")

    monkeypatch.setitem(registry.CHECKS, "final_state_matches_gold", broken)
    score = score_episodes_sync([gold_episode(task)], _rubric())[0]
    assert score.total is None
    assert score.criterion("state").unscorable.kind == "check_error"
    assert "bug in check" in score.criterion("state").unscorable.message
