import pytest
from rubric_helpers import ENV, call, gold_episode, play

import toolgym
from toolgym.envs.catalog.unitconv.tasks import generate_tasks
from toolgym.errors import ConfigError
from toolgym.rollouts import ChaosPolicy, ScriptedPolicy, gold_script, run_episodes
from toolgym.rubrics import catalog_rubrics, rubric_for, score_episodes_sync, score_metrics
from toolgym.rubrics.metrics import CRITERION_MEAN, SCORE_GATED_FRAC, SCORE_MEAN, SCORE_UNSCORABLE_FRAC


def shipped() -> set[str]:
    """Registered ids in the library's namespace (other tests register throwaway envs)."""
    return {env_id for env_id in toolgym.envs.registered() if env_id.startswith("toolgym/")}


def test_every_shipped_environment_has_a_catalog_rubric():
    assert "toolgym/unitconv-v0" in shipped()
    missing = sorted(shipped() - set(catalog_rubrics()))
    assert not missing, f"no rubric in toolgym/rubrics/catalog/ for {missing}"


def test_catalog_rubrics_name_only_registered_environments():
    assert set(catalog_rubrics()) <= shipped()


def test_unknown_env_rubric_suggests_the_closest():
    with pytest.raises(ConfigError, match="no catalog rubric for 'toolgym/unitconv-v1'. Did you mean 'toolgym/unitconv-v0'"):
        rubric_for("toolgym/unitconv-v1")


@pytest.fixture(scope="module")
def mixed_episodes():
    tasks = generate_tasks(12, seed=100)
    gold = run_episodes(ENV, ScriptedPolicy.gold(tasks), tasks=tasks)
    chaos = run_episodes(ENV, ChaosPolicy(), tasks=tasks, seed=7)
    return gold + chaos


def test_gold_replays_score_full_marks_and_chaos_scores_low(mixed_episodes):
    scores = score_episodes_sync(mixed_episodes, rubric_for(ENV).verifiable())
    gold, chaos = scores[:12], scores[12:]
    assert all(s.total == 1.0 for s in gold)
    assert all(s.total is not None and s.total < 0.2 for s in chaos)
    metrics = score_metrics(scores)
    assert metrics[SCORE_UNSCORABLE_FRAC] == 0.0
    assert metrics[SCORE_MEAN] < 0.6
    assert metrics[SCORE_GATED_FRAC] > 0
    assert metrics[CRITERION_MEAN.format(id="state")] == 0.5


def test_programmatic_rescoring_is_deterministic(mixed_episodes):
    rubric = rubric_for(ENV)
    first = score_episodes_sync(mixed_episodes, rubric, skip_missing_critics=True)
    second = score_episodes_sync(mixed_episodes, rubric, skip_missing_critics=True)
    assert [s.without_timing() for s in first] == [s.without_timing() for s in second]
    assert [s.fingerprint() for s in first] == [s.fingerprint() for s in second]
    assert len({s.fingerprint() for s in first}) > 2  # the fingerprint does tell scores apart


def test_family_criteria_apply_only_to_their_family(mixed_episodes):
    scores = score_episodes_sync(mixed_episodes[:12], rubric_for(ENV).verifiable())
    for ep, score in zip(mixed_episodes[:12], scores, strict=True):
        ids = {c.id for c in score.criteria}
        assert ("recalls_source" in ids) == (ep.task.metadata["family"] == "recall_convert")
        assert ("uses_calculator" in ids) == (ep.task.metadata["family"] in ("convert_scale", "sum_convert"))


def test_a_missing_critic_is_a_config_error_or_a_visible_skip(task):
    rubric = rubric_for(ENV)
    with pytest.raises(ConfigError, match=r"needs critic\(s\) \['judge'\] but got none; pass critics="):
        score_episodes_sync([gold_episode(task)], rubric)
    score = score_episodes_sync([gold_episode(task)], rubric, skip_missing_critics=True)[0]
    clarity = score.criterion("clarity")
    assert clarity.skipped and not clarity.applicable
    assert score.total == 1.0


def test_deleting_memory_voids_the_episode(task):
    ep = play(task, [call("store", name="tmp", value=1), call("delete", name="tmp"), *gold_script(task)])
    score = score_episodes_sync([ep], rubric_for(ENV).verifiable())[0]
    assert (score.total, score.gated_by) == (0.0, "no_deletes")


def test_synthesized_task_criteria_are_scored_by_the_judge():
    """Criteria that synthesis writes into ``task.metadata["rubric"]`` reach the judge and the total."""
    from toolgym.envs.synth import rubric_items
    from toolgym.rollouts import ScriptedPolicy, run_episodes, sample_tasks
    from toolgym.rubrics.catalog import rubric_for
    from toolgym.rubrics.critics import FunctionCritic

    tasks = sample_tasks("toolgym/unitconv-v0", n=2, seed=0)
    tasks[0] = tasks[0].model_copy(update={"metadata": {**tasks[0].metadata, "rubric": rubric_items("states the number")}})
    episodes = run_episodes("toolgym/unitconv-v0", ScriptedPolicy.gold(tasks), tasks=tasks)
    judged: list[str] = []

    def judge(episode, criterion):
        judged.append(criterion.id)
        return 0.0

    rubric = rubric_for("toolgym/unitconv-v0").verifiable()
    scores = score_episodes_sync(episodes, rubric, critics=[FunctionCritic("judge", judge)])
    assert judged == ["task_c1"]
    assert [c.id for c in scores[0].criteria][-1] == "task_c1" and "task_c1" not in [c.id for c in scores[1].criteria]
    assert scores[0].total < scores[1].total == 1.0
