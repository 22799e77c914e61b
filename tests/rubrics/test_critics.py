import asyncio
import json
import re

import pytest
from rubric_helpers import ENV, FakeJudge, endpoint_error, gold_episode, play, pointwise_reply

from toolgym.envs.catalog.unitconv.tasks import generate_tasks
from toolgym.rollouts import ScriptedPolicy, gold_script, run_episodes
from toolgym.rubrics import (
    FunctionCritic,
    JudgeBudget,
    LLMJudge,
    PairwiseCritic,
    Rubric,
    score_episodes,
    score_episodes_sync,
    score_metrics,
)
from toolgym.rubrics.critics import JudgementParseError, bradley_terry, extract_json, win_matrix, win_rate
from toolgym.rubrics.metrics import (
    COMPONENT_CACHE_HITS,
    COMPONENT_CALLS,
    COMPONENT_TOKENS,
    SCORE_UNSCORABLE_FRAC,
    UNSCORABLE_KIND,
)


def rubric(on_unscorable="unscorable", critic="judge", extra=()):
    return Rubric.model_validate(
        {
            "name": "r",
            "on_unscorable": on_unscorable,
            "criteria": [
                {"id": "state", "description": "World as gold leaves it.", "weight": 2, "source": {"type": "check", "check": "final_state_matches_gold"}},
                {"id": "clarity", "description": "Clear answer.", "scale": {"low": 1, "high": 5}, "source": {"type": "critic", "critic": critic}},
                *extra,
            ],
        }
    )


HONESTY = {"id": "honesty", "description": "No invented facts.", "source": {"type": "critic", "critic": "judge"}}


@pytest.fixture
def episodes(task):
    wrong = play(task, [gold_script(task)[0], "The result is 7."])
    return [gold_episode(task), wrong]


def test_a_deterministic_judge_scores_on_its_scale(episodes):
    judge = LLMJudge(FakeJudge(pointwise_reply(lambda cid, prompt: 5 if "stored as" in prompt else 2)))
    good, bad = score_episodes_sync(episodes, rubric(), critics=[judge])
    assert good.criterion("clarity").raw == 5 and good.criterion("clarity").value == 1.0
    assert bad.criterion("clarity").raw == 2 and bad.criterion("clarity").value == 0.25
    assert good.total == 1.0
    assert bad.total == pytest.approx((2 * 0.0 + 0.25) / 3)
    cost = next(c for c in good.components if c.name == "critic:judge")
    assert (cost.calls, cost.prompt_tokens, cost.completion_tokens) == (1, 10, 3)
    assert good.criterion("clarity").rationale == "fake"


@pytest.mark.parametrize(
    ("policy", "deadline_s", "kind"),
    [
        (FakeJudge(lambda prompt: "I think it is fine, 4 out of 5."), 5.0, "judge_unparseable"),
        (FakeJudge(lambda prompt: '{"criteria": [{"id": "clarity", "score": "high"}]}'), 5.0, "judge_unparseable"),
        (FakeJudge(lambda prompt: '{"criteria": [{"id": "clarity", "score": 9}]}'), 5.0, "judge_unparseable"),
        (FakeJudge(endpoint_error), 5.0, "judge_error"),
        (FakeJudge(pointwise_reply(lambda c, p: 5), delay_s=0.5), 0.02, "judge_timeout"),
    ],
    ids=["prose", "bad-field", "off-scale", "endpoint-error", "timeout"],
)
def test_judge_failures_are_unscorable_and_counted_never_zero(episodes, policy, deadline_s, kind):
    judge = LLMJudge(policy, retries=1, budget=JudgeBudget(deadline_s=deadline_s))
    scores = score_episodes_sync(episodes, rubric(), critics=[judge])
    for s in scores:
        assert s.total is None
        assert s.unscorable.kind == kind
        assert s.criterion("clarity").unscorable.kind == kind
        assert s.criterion("state").value is not None  # the checks still ran
    metrics = score_metrics(scores)
    assert metrics[SCORE_UNSCORABLE_FRAC] == 1.0
    assert metrics[UNSCORABLE_KIND.format(kind=kind)] == 2
    assert metrics[COMPONENT_CALLS.format(name="critic:judge")] == 4  # two episodes, two attempts each


def test_a_raising_policy_is_a_judge_error(episodes):
    class Broken:
        async def generate(self, requests):
            raise ConnectionError("judge host down")

    score = score_episodes_sync(episodes[:1], rubric(), critics=[LLMJudge(Broken(), retries=0)])[0]
    assert score.unscorable.kind == "judge_error"
    assert "ConnectionError: judge host down" in score.criterion("clarity").unscorable.message


def test_retries_recover_from_a_bad_first_answer(episodes):
    answers = iter(["not json", json.dumps({"criteria": [{"id": "clarity", "score": 4}]})])
    policy = FakeJudge(lambda prompt: next(answers))
    score = score_episodes_sync(episodes[:1], rubric(), critics=[LLMJudge(policy, retries=2)])[0]
    assert score.criterion("clarity").raw == 4
    assert len(policy.requests) == 2
    assert policy.requests[0].seed != policy.requests[1].seed


def test_a_partial_answer_leaves_only_the_missing_criterion_unscorable(episodes):
    policy = FakeJudge(lambda prompt: json.dumps({"criteria": [{"id": "clarity", "score": 3}]}))
    strict, lenient = (
        score_episodes_sync(episodes[:1], rubric(mode, extra=[HONESTY]), critics=[LLMJudge(policy, retries=1)])[0]
        for mode in ("unscorable", "renormalize")
    )
    assert strict.criterion("clarity").value == 0.5
    assert strict.criterion("honesty").unscorable.kind == "judge_unparseable"
    assert strict.total is None
    assert lenient.total == pytest.approx((2 * 1.0 + 0.5) / 3)


def test_identical_judgements_come_from_the_cache(episodes):
    policy = FakeJudge(pointwise_reply(lambda c, p: 3))
    judge = LLMJudge(policy)
    first = score_episodes_sync(episodes, rubric(), critics=[judge])
    second = score_episodes_sync(episodes, rubric(), critics=[judge])
    assert len(policy.requests) == 2  # one per distinct transcript, none on the second pass
    assert [s.without_timing()["criteria"] for s in first] == [s.without_timing()["criteria"] for s in second]
    metrics = score_metrics(second)
    assert metrics[COMPONENT_CACHE_HITS.format(name="critic:judge")] == 2
    assert metrics[COMPONENT_CALLS.format(name="critic:judge")] == 0
    assert score_metrics(first)[COMPONENT_TOKENS.format(name="critic:judge")] == 26
    uncached = LLMJudge(policy, budget=JudgeBudget(cache=None))
    score_episodes_sync(episodes, rubric(), critics=[uncached])
    assert len(policy.requests) == 4


def test_failures_are_not_cached(episodes):
    answers = iter(["garbage", json.dumps({"criteria": [{"id": "clarity", "score": 4}]})])
    judge = LLMJudge(FakeJudge(lambda prompt: next(answers)), retries=0)
    assert score_episodes_sync(episodes[:1], rubric(), critics=[judge])[0].unscorable.kind == "judge_unparseable"
    assert score_episodes_sync(episodes[:1], rubric(), critics=[judge])[0].criterion("clarity").raw == 4


def test_the_budget_bounds_calls_in_flight_across_critics():
    tasks = generate_tasks(10, seed=300)
    eps = run_episodes(ENV, ScriptedPolicy.gold(tasks), tasks=tasks)
    budget = JudgeBudget(max_concurrency=2)
    policy = FakeJudge(pointwise_reply(lambda c, p: 4), delay_s=0.02)
    critics = [LLMJudge(policy, budget=budget), LLMJudge(policy, name="second", budget=budget)]
    extra = [{"id": "other", "description": "d", "source": {"type": "critic", "critic": "second"}, "scale": {"low": 1, "high": 5}}]
    scores = score_episodes_sync(eps, rubric(extra=extra), critics=critics)
    assert all(s.total is not None for s in scores)
    assert len(policy.requests) == 20
    assert budget.peak_in_flight == 2 and policy.peak == 2


def test_budget_rejects_nonsense():
    with pytest.raises(ValueError, match="max_concurrency must be at least 1"):
        JudgeBudget(max_concurrency=0)
    with pytest.raises(ValueError, match="deadline_s must be positive"):
        JudgeBudget(deadline_s=0)


# ---------------------------------------------------------------- pairwise


def _sibling_script(task):
    gold = gold_script(task)
    scripts = {0: gold, 1: gold[:-1] + ["Done."], 2: ["I refuse."], 3: gold}

    def turn(request):
        sibling = int(request.episode_id.rsplit("/", 1)[1])
        script = scripts[sibling]
        index = sum(m.role == "assistant" for m in request.messages)
        return script[min(index, len(script) - 1)]

    return turn


def _prefers_the_answer(answer):
    def respond(prompt):
        # Judge the final answers only: the tool results of every sibling show the number.
        a = re.search(r"<response_a>(.*)</response_a>", prompt, re.DOTALL).group(1).rsplit("[assistant]", 1)[-1]
        b = re.search(r"<response_b>(.*)</response_b>", prompt, re.DOTALL).group(1).rsplit("[assistant]", 1)[-1]
        winner = "tie" if (answer in a) == (answer in b) else ("A" if answer in a else "B")
        return json.dumps({"criteria": [{"id": "clarity", "winner": winner.lower(), "rationale": "has the number"}]})

    return respond


@pytest.mark.parametrize("method", ["bradley_terry", "win_rate"])
def test_pairwise_ranks_group_siblings(task, method):
    eps = run_episodes(ENV, ScriptedPolicy(_sibling_script(task)), tasks=[task], group_size=4)
    assert len({e.group for e in eps}) == 1
    policy = FakeJudge(_prefers_the_answer(task.expected.answer))
    critic = PairwiseCritic(policy, name="judge", method=method)
    scores = score_episodes_sync(eps, rubric(), critics=[critic])
    values = [s.criterion("clarity").value for s in scores]
    assert values[0] == values[3] > values[1] == values[2]
    assert len(policy.requests) == 12  # 6 pairs, both orders
    assert "comparisons" in scores[0].criterion("clarity").rationale
    assert sum(c.calls for s in scores for c in s.components if c.name == "critic:judge") == 12


def test_pairwise_without_siblings_is_unscorable(task):
    critic = PairwiseCritic(FakeJudge(_prefers_the_answer("x")), name="judge")
    score = score_episodes_sync([gold_episode(task)], rubric(), critics=[critic])[0]
    assert score.criterion("clarity").unscorable.kind == "no_comparisons"


def test_pairwise_with_an_unparseable_judge_reports_why(task):
    eps = run_episodes(ENV, ScriptedPolicy(_sibling_script(task)), tasks=[task], group_size=3)
    critic = PairwiseCritic(FakeJudge(lambda p: "B is better"), name="judge", retries=0)
    scores = score_episodes_sync(eps, rubric(), critics=[critic])
    reason = scores[0].criterion("clarity").unscorable
    assert reason.kind == "no_comparisons"
    assert "judge_unparseable x4" in reason.message


def test_bradley_terry_orders_like_win_counts():
    wins = win_matrix(3, [(0, 1, "A"), (1, 0, "B"), (0, 2, "A"), (2, 0, "B"), (1, 2, "A"), (2, 1, "tie")])
    bt, wr = bradley_terry(wins), win_rate(wins)
    assert bt[0] > bt[1] > bt[2]
    assert wr == [1.0, 0.375, 0.125]
    assert bradley_terry(win_matrix(3, [(0, 1, "A")]))[2] is None


# ---------------------------------------------------------------- programmatic critics


def test_function_critics_and_their_failures(episodes):
    ok = FunctionCritic("judge", lambda ep, c: (5.0, "stored") if "stored" in ep.final_answer else 1.0)
    good, bad = score_episodes_sync(episodes, rubric(), critics=[ok])
    assert (good.criterion("clarity").value, good.criterion("clarity").rationale) == (1.0, "stored")
    assert bad.criterion("clarity").value == 0.0

    def boom(ep, c):
        raise KeyError("no field")

    broken = score_episodes_sync(episodes[:1], rubric(), critics=[FunctionCritic("judge", boom)])[0]
    assert broken.criterion("clarity").unscorable.kind == "judge_error"


async def test_async_function_critic_and_a_crashing_critic(episodes):
    async def slow(ep, c):
        await asyncio.sleep(0)
        return 3

    score = (await score_episodes(episodes[:1], rubric(), critics=[FunctionCritic("judge", slow)]))[0]
    assert score.criterion("clarity").raw == 3

    class Crashes:
        name, group_wise = "judge", False

        async def judge(self, episodes, criteria, rubric):
            raise RuntimeError("critic bug")

    crashed = (await score_episodes(episodes[:1], rubric(), critics=[Crashes()]))[0]
    assert crashed.unscorable.kind == "judge_error"
    assert "critic 'judge' raised RuntimeError: critic bug" in crashed.unscorable.message


# ---------------------------------------------------------------- parsing


def test_json_is_found_in_prose_and_fences():
    assert extract_json('Sure! {"a": 1} and {"b": 2}') == {"a": 1}
    assert extract_json('```json\n{"a": {"b": [1, 2]}}\n```') == {"a": {"b": [1, 2]}}
    assert extract_json('{oops} then {"ok": true}') == {"ok": True}
    with pytest.raises(JudgementParseError, match="no JSON object"):
        extract_json("[1, 2] no object here")
