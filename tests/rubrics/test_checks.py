import pytest
from rubric_helpers import call, gold_episode, play, synthetic, tool_exchange

from toolgym.envs.types import AssistantMessage, Expected, GoldAction, Task, ToolCall
from toolgym.policies.scripted import gold_script
from toolgym.rubrics.checks import (
    CHECKS,
    CheckUnscorable,
    answer_matches,
    called_before,
    efficiency_vs_gold,
    files_as_expected,
    final_state_matches_gold,
    forbidden_actions,
    gold_calls_made,
    required_outputs_present,
    run_check,
    tool_called,
    tool_not_called,
    well_formed_call_rate,
)
from toolgym.rubrics.checks import (
    tests_pass as check_tests_pass,  # aliased: pytest would collect a name starting with 'test'
)
from toolgym.rubrics.gold import GoldReplayer, GoldReplayError


def test_every_check_is_registered_under_its_own_name():
    assert all(fn.__name__ == name for name, fn in CHECKS.items())
    shipped = {
        "final_state_matches_gold", "required_outputs_present", "answer_matches", "tool_called", "tool_not_called",
        "gold_calls_made", "called_before", "forbidden_actions", "well_formed_call_rate", "efficiency_vs_gold",
        "tests_pass", "files_as_expected",
    }
    assert shipped <= set(CHECKS)  # new checks may join; none of these may disappear or be renamed


# ---------------------------------------------------------------- final state


def test_gold_episode_matches_the_replayed_gold_state(task):
    ep = gold_episode(task)
    assert final_state_matches_gold(task, ep) == 1.0


def test_wrong_stored_value_does_not_match(task):
    slot = task.gold_actions[-1].arguments["name"]
    ep = play(task, [call("store", name=slot, value=1.0), "done"])
    assert final_state_matches_gold(task, ep) == 0.0


def test_gold_digest_comes_from_a_replay_not_from_the_task(task):
    lying = task.model_copy(update={"expected": Expected(state_digest="0" * 32)})
    ep = gold_episode(task).model_copy(update={"task": lying})
    assert final_state_matches_gold(lying, ep) == 1.0


def test_replays_are_cached_per_task():
    from toolgym.envs.catalog.unitconv.tasks import generate_tasks

    replayer = GoldReplayer()
    tasks = generate_tasks(3, seed=500)
    for _ in range(4):
        for t in tasks:
            replayer.digest("toolgym/unitconv-v0", t)
    assert replayer.replays == 3


def test_broken_gold_actions_raise_a_named_error(task):
    broken = task.model_copy(update={"gold_actions": [GoldAction(name="recall", arguments={"name": "nope"})]})
    with pytest.raises(GoldReplayError, match="gold action 0 \\(recall\\) failed on replay"):
        GoldReplayer().digest("toolgym/unitconv-v0", broken)


def test_missing_digest_is_unscorable_and_no_reference_is_not_applicable(task):
    ep = gold_episode(task).model_copy(update={"final_state_digest": None})
    with pytest.raises(CheckUnscorable, match="no final_state_digest"):
        final_state_matches_gold(task, ep)
    bare = Task(id="bare", instruction="hi")
    assert final_state_matches_gold(bare, synthetic([], task=bare)) is None


def test_replay_in_a_given_env(task, unitconv):
    assert final_state_matches_gold(task, gold_episode(task), env=unitconv) == 1.0


# ---------------------------------------------------------------- answers


def test_required_outputs_fraction_and_normalization():
    t = Task(id="t", instruction="i", expected=Expected(outputs=["Paris", "42"]))
    assert required_outputs_present(t, synthetic([], task=t, final_answer="It is  PARIS.")) == 0.5
    assert required_outputs_present(t, synthetic([], task=t, final_answer="paris, 42")) == 1.0
    assert required_outputs_present(t, synthetic([], task=t, final_answer="paris, 42"), normalized=False) == 0.5
    assert required_outputs_present(Task(id="n", instruction="i"), synthetic([])) is None


def test_answer_match_modes():
    t = Task(id="t", instruction="i", expected=Expected(answer="12.5"))
    ep = synthetic([], task=t, final_answer="The total is 12.5 km; stored as 'total_7'.")
    assert answer_matches(t, ep, mode="exact") == 0.0
    assert answer_matches(t, ep, mode="numeric") == 1.0
    assert answer_matches(t, ep, mode="numeric", pick="last") == 1.0  # 'total_7' holds no number
    assert answer_matches(t, synthetic([], task=t, final_answer="12.5")) == 1.0
    assert answer_matches(t, synthetic([], task=t, final_answer=" 12.5. ")) == 1.0
    assert answer_matches(t, synthetic([], task=t, final_answer="12.5001"), mode="numeric", tol=1e-3) == 1.0
    assert answer_matches(t, synthetic([], task=t, final_answer="12.6"), mode="numeric", tol=1e-3) == 0.0
    assert answer_matches(t, synthetic([], task=t, final_answer="1,012.5 or 12.5"), mode="numeric", pick="only") == 0.0
    assert answer_matches(t, synthetic([], task=t, final_answer="3 then 12.5"), mode="numeric", pick="any") == 1.0
    assert answer_matches(Task(id="n", instruction="i"), ep) is None


def test_numeric_match_against_a_reference_without_a_number_is_a_rubric_error():
    t = Task(id="t", instruction="i", expected=Expected(answer="Paris"))
    with pytest.raises(ValueError, match="holds no number; use mode='normalized'"):
        answer_matches(t, synthetic([], task=t), mode="numeric")


# ---------------------------------------------------------------- calls


def test_tool_called_with_matchers(task):
    ep = gold_episode(task)
    convert = task.gold_actions[0].arguments
    assert tool_called(task, ep, name="convert") == 1.0
    assert tool_called(task, ep, name="convert", arguments={"to_unit": convert["to_unit"]}) == 1.0
    assert tool_called(task, ep, name="convert", arguments={"to_unit": "nope"}) == 0.0
    assert tool_called(task, ep, name="convert", arguments=dict(convert), match="exact") == 1.0
    assert tool_called(task, ep, name="convert", arguments={"value": {"$approx": convert["value"] + 1e-4, "$tol": 1e-3}}) == 1.0
    assert tool_called(task, ep, name="convert", arguments=lambda a: a["value"] < 0) == 0.0
    assert tool_called(task, ep, name="convert", min_times=2) == 0.0
    assert tool_called(task, ep, name="recall") == 0.0


def test_failed_calls_do_not_count_as_done_but_count_as_attempted(task):
    ep = play(task, [call("recall", name="nothing_here"), "done"])
    assert tool_called(task, ep, name="recall") == 0.0
    assert tool_called(task, ep, name="recall", succeeded=False) == 1.0
    assert tool_not_called(task, ep, name="recall") == 0.0
    assert tool_not_called(task, ep, name="delete") == 1.0


def test_forbidden_actions_from_params_or_task_metadata(task):
    ep = play(task, [call("delete", name="x"), "done"])
    assert forbidden_actions(task, ep, actions=[{"name": "delete"}]) == 0.0
    assert forbidden_actions(task, ep, actions=[{"name": "delete", "arguments": {"name": "y"}}]) == 1.0
    assert forbidden_actions(task, ep) is None
    flagged = task.model_copy(update={"metadata": {**task.metadata, "forbidden_actions": [{"name": "delete"}]}})
    assert forbidden_actions(flagged, ep) == 0.0


def test_well_formed_call_rate_counts_parse_errors_unknown_tools_and_bad_arguments(task):
    turns = [
        "<tool_call>{broken</tool_call>",
        call("teleport"),
        call("convert", value=1),
        call("list_units"),
        "done",
    ]
    ep = play(task, turns)
    assert well_formed_call_rate(task, ep) == pytest.approx(1 / 4)
    assert well_formed_call_rate(task, gold_episode(task)) == 1.0
    assert well_formed_call_rate(task, play(task, ["no calls at all"])) is None


def test_efficiency_and_gold_calls(task):
    gold = gold_episode(task)
    assert efficiency_vs_gold(task, gold) == 1.0
    assert gold_calls_made(task, gold) == 1.0
    assert gold_calls_made(task, gold, in_order=True) == 1.0
    doubled = play(task, [call("list_units")] * 3 + gold_script(task))
    assert efficiency_vs_gold(task, doubled) == pytest.approx(3 / 6)
    assert efficiency_vs_gold(task, doubled, cap=0.4) == 0.4
    assert efficiency_vs_gold(task, play(task, ["no calls"])) == 0.0
    first = task.gold_actions[0]
    partial = play(task, [call(first.name, **first.arguments), "done"])
    assert gold_calls_made(task, partial) == pytest.approx(1 / 3)
    assert efficiency_vs_gold(Task(id="n", instruction="i"), partial) is None


def test_gold_calls_in_order():
    t = Task(id="t", instruction="i", gold_actions=[GoldAction(name="a"), GoldAction(name="b")])
    msgs = tool_exchange("b", {}, "ok", "c1") + tool_exchange("a", {}, "ok", "c2")
    ep = synthetic(msgs, task=t)
    assert gold_calls_made(t, ep) == 1.0
    assert gold_calls_made(t, ep, in_order=True) == 0.5


# ---------------------------------------------------------------- shell contract


def test_tests_pass_from_the_metadata_report():
    ep = synthetic([], metadata={"shell": {"tests": {"passed": 3, "failed": 1}}})
    assert check_tests_pass(ep.task, ep) == 0.75
    assert check_tests_pass(ep.task, ep, mode="all") == 0.0
    exit_only = synthetic([], metadata={"shell": {"tests": {"exit_code": 0}}})
    assert check_tests_pass(exit_only.task, exit_only) == 1.0


def test_tests_pass_from_the_last_test_command():
    first = tool_exchange("run", {"command": "pytest -q"}, '{"exit_code": 1, "stdout": "2 failed, 1 passed in 0.1s"}', "c1")
    second = tool_exchange("run", {"command": "pytest -q"}, '{"exit_code": 0, "stdout": "3 passed in 0.1s"}', "c2")
    other = tool_exchange("run", {"command": "ls"}, '{"exit_code": 2, "stdout": ""}', "c3")
    ep = synthetic(first + second + other)
    assert check_tests_pass(ep.task, ep) == 1.0
    plain = synthetic(tool_exchange("bash", {"cmd": "python -m pytest"}, "==== 1 passed, 1 error in 2s ====", "c1"))
    assert check_tests_pass(plain.task, plain) == 0.5
    only_code = synthetic(tool_exchange("exec", {"argv": ["make", "test"]}, '{"returncode": 2}', "c1"))
    assert check_tests_pass(only_code.task, only_code) == 0.0


def test_no_test_run_is_unscorable_not_zero():
    ep = synthetic(tool_exchange("run", {"command": "ls"}, "a b"))
    with pytest.raises(CheckUnscorable, match="no test report"):
        check_tests_pass(ep.task, ep)


def test_files_as_expected():
    files = {"main.py": "print('hi')\n", "notes.txt": "draft v2", "old.txt": None}
    ep = synthetic([], metadata={"shell": {"files": files}})
    expected = {"main.py": "print('hi')\n", "notes.txt": {"$regex": "v2$"}, "old.txt": None, "missing.txt": "x"}
    assert files_as_expected(ep.task, ep, files=expected) == 0.75
    in_task = Task(id="t", instruction="i", metadata={"expected_files": {"main.py": "print('hi')\n"}})
    assert files_as_expected(in_task, ep.model_copy(update={"task": in_task})) == 1.0
    assert files_as_expected(ep.task, ep) is None
    with pytest.raises(CheckUnscorable, match="no metadata\\['shell'\\]\\['files'\\]"):
        files_as_expected(ep.task, synthetic([]), files={"a": "b"})


# ---------------------------------------------------------------- running checks


def test_run_check_rejects_values_outside_the_unit_interval(monkeypatch, task):
    monkeypatch.setitem(CHECKS, "final_state_matches_gold", lambda t, e, env=None: 1.5)
    with pytest.raises(ValueError, match="returned 1.5; a check returns None or a number in \\[0, 1\\]"):
        run_check("final_state_matches_gold", task, gold_episode(task))


def test_calls_are_read_from_messages_with_results():
    msgs = [AssistantMessage(tool_calls=[ToolCall(id="x", name="store", arguments={"name": "a", "value": 1})])]
    ep = synthetic(msgs)  # the call never got a result
    assert tool_called(ep.task, ep, name="store") == 0.0
    assert tool_called(ep.task, ep, name="store", succeeded=False) == 1.0


def test_called_before_guards_other_tools():
    ok = synthetic(tool_exchange("login", {}, "ok", "c1") + tool_exchange("read", {}, "ok", "c2"))
    assert called_before(ok.task, ok, name="login") == 1.0
    early = synthetic(tool_exchange("read", {}, "ok", "c1") + tool_exchange("login", {}, "ok", "c2"))
    assert called_before(early.task, early, name="login") == 0.0
    assert called_before(early.task, early, name="login", others=["write"]) is None
    failed_login = synthetic(tool_exchange("login", {}, "bad", "c1", error="tool_exception") + tool_exchange("read", {}, "ok", "c2"))
    assert called_before(failed_login.task, failed_login, name="login") == 0.0
    assert called_before(ok.task, synthetic([]), name="login") is None
