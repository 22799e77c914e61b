"""Open rubrics: plain functions registered as checks, referred to by name, never a silent 0."""

from __future__ import annotations

import contextlib
import string
from collections.abc import Iterator

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from rubric_helpers import synthetic

import toolgym
from toolgym.errors import ConfigError
from toolgym.rubrics import Criterion, Rubric, RubricError, register_check, rubric_from_dict, score_episodes_sync
from toolgym.rubrics.checks import CHECKS, CheckUnscorable

EPISODE = synthetic([], final_answer="the answer is 42")
NAMES = st.text(string.ascii_lowercase, min_size=3, max_size=12).map(lambda s: f"my_{s}")


@contextlib.contextmanager
def registry() -> Iterator[None]:
    """Whatever a test registers is gone afterwards."""
    saved = dict(CHECKS)
    try:
        yield
    finally:
        CHECKS.clear()
        CHECKS.update(saved)


def by_name(name: str, **source) -> dict:
    return {"name": "r", "criteria": [{"id": "c", "description": "d", "source": {"type": "check", "check": name, **source}}]}


def test_register_check_is_exported_lazily_and_returns_the_function():
    assert toolgym.register_check is register_check
    with registry():

        def has_digit(task, episode) -> bool:
            return any(ch.isdigit() for ch in episode.final_answer)

        assert register_check(has_digit) is has_digit and CHECKS["has_digit"] is has_digit


@settings(max_examples=25, deadline=None)
@given(name=NAMES, limit=st.integers(0, 40))
def test_a_registered_check_is_referred_to_by_name_with_validated_params(name, limit):
    with registry():

        def short(task, episode, *, limit: int = 10) -> float:
            return float(len(episode.final_answer) <= limit)

        register_check(short, name=name)
        rubric = rubric_from_dict(by_name(name, params={"limit": limit}))
        assert score_episodes_sync([EPISODE], rubric)[0].total == float(len(EPISODE.final_answer) <= limit)
        with pytest.raises(RubricError, match=r"criteria\[0\] \(id 'c'\)\.source\.params: .*params\.limt.*Did you mean 'limit'"):
            rubric_from_dict(by_name(name, params={"limt": limit}))
        with pytest.raises(RubricError, match=r"source\.params: .*params\.limit: Input should be a valid integer"):
            rubric_from_dict(by_name(name, params={"limit": "many"}))


@settings(max_examples=25, deadline=None)
@given(name=NAMES, cut=st.integers(0, 100))
def test_a_misspelled_name_in_yaml_names_the_field_and_the_registered_check(tmp_path_factory, name, cut):
    with registry():
        register_check(lambda task, episode: 1.0, name=name)
        i = 3 + cut % (len(name) - 3)  # drop one letter after "my_"
        typo = name[:i] + name[i + 1:]
        file = tmp_path_factory.mktemp("r") / "r.yaml"
        file.write_text(yaml.safe_dump(by_name(typo)))
        with pytest.raises(RubricError) as err:
            toolgym.rubrics.load_rubric(file)
        message = str(err.value)
        assert f"{file}: criteria[0] (id 'c').source.check: unknown check {typo!r}" in message
        assert f"Did you mean {name!r}" in message and "register_check" in message


EXCEPTIONS = st.sampled_from([ValueError, KeyError, ZeroDivisionError, RuntimeError, TypeError, AttributeError, IndexError, type("Custom", (Exception,), {})])


@settings(max_examples=40, deadline=None)
@given(exc=EXCEPTIONS, text=st.text(string.ascii_letters + " ", min_size=1, max_size=30), renormalize=st.booleans())
def test_an_exception_inside_a_check_is_a_typed_unscorable_never_zero(exc, text, renormalize):
    with registry():

        def flaky(task, episode) -> float:
            raise exc(text)

        def fine(task, episode) -> float:
            return 0.25

        rubric = Rubric(name="r", criteria=[flaky, fine], on_unscorable="renormalize" if renormalize else "unscorable")
        score = score_episodes_sync([EPISODE], rubric)[0]
        broken = score.criterion("flaky")
        assert broken.value is None and broken.unscorable is not None and broken.unscorable.kind == "check_error"
        assert exc.__name__ in broken.unscorable.message
        assert score.total == (0.25 if renormalize else None)
        if not renormalize:
            assert score.unscorable is not None and score.unscorable.kind == "check_error"


@settings(max_examples=60, deadline=None)
@given(value=st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.booleans(), st.none(),
    st.text(max_size=3), st.lists(st.floats(0, 1), max_size=2),
))
def test_what_a_check_returns_is_a_value_not_applicable_or_check_error(value):
    with registry():
        register_check(lambda task, episode: value, name="returns")
        score = score_episodes_sync([EPISODE], Rubric(name="r", criteria=[Criterion.from_check("returns")]))[0]
        entry = score.criterion("returns")
        if value is None:
            assert not entry.applicable and entry.value is None
        elif isinstance(value, (bool, int, float)) and 0 <= value <= 1:  # NaN fails the comparison
            assert entry.value == float(value) and score.total == float(value)
        else:
            assert entry.unscorable is not None and entry.unscorable.kind == "check_error" and score.total is None
            assert "a check returns None or a number in [0, 1]" in entry.unscorable.message


def test_check_unscorable_is_missing_data():
    with registry():

        def needs_report(task, episode) -> float:
            raise CheckUnscorable("no test report")

        entry = score_episodes_sync([EPISODE], Rubric(name="r", criteria=[needs_report]))[0].criterion("needs_report")
        assert entry.unscorable is not None and entry.unscorable.kind == "missing_data" and entry.unscorable.message == "no test report"


def test_plain_functions_in_a_rubric_equal_the_same_checks_by_name():
    with registry():

        def has_digit(task, episode) -> bool:
            """The final answer holds a digit."""
            return any(ch.isdigit() for ch in episode.final_answer)

        def uses_env(task, episode, env, *, word: str = "answer") -> float:
            """Takes the env as third argument."""
            return float(env is None and word in episode.final_answer)

        plain = Rubric(name="r", criteria=[has_digit, Criterion.from_check(uses_env, weight=3, params={"word": "zzz"})])
        assert plain.criteria[0].description == "The final answer holds a digit." and plain.criteria[1].weight == 3
        named = rubric_from_dict(plain.model_dump(mode="json"))
        scores = [score_episodes_sync([EPISODE], r)[0] for r in (plain, named)]
        assert scores[0].fingerprint() == scores[1].fingerprint() and scores[0].total == pytest.approx(0.25)


@pytest.mark.parametrize(
    "fn, kwargs, message",
    [
        (lambda task, episode: 1.0, {}, r"'<lambda>' is not a check name.*name='my_check'"),
        (lambda episode: 1.0, {"name": "one"}, r"takes 1 positional parameter\(s\); a check is fn\(task, episode\[, env\]"),
        (lambda task, episode, env, extra: 1.0, {"name": "four"}, r"positional parameter\(s\) \['extra'\].*keyword-only"),
        (eval("lambda task, episode, *, limit=3: 1.0"), {"name": "nohint"}, r"param 'limit' has no type hint"),
        ("not a function", {"name": "s"}, r"expected a function, got str"),
    ],
)
def test_functions_that_cannot_be_checks_are_refused_with_the_fix(fn, kwargs, message):
    with registry(), pytest.raises(ConfigError, match=message):
        register_check(fn, **kwargs)


def test_async_functions_are_refused():
    async def judged(task, episode) -> float:
        return 1.0

    with registry(), pytest.raises(ConfigError, match="is async; checks are plain functions"):
        register_check(judged)


def test_a_taken_name_is_refused_unless_replaced_and_a_rerun_definition_replaces_quietly():
    with registry():
        with pytest.raises(ConfigError, match=r"'answer_matches' is already registered \(toolgym\.rubrics\.checks\.answer\.answer_matches\)"):
            register_check(lambda task, episode: 1.0, name="answer_matches")
        for _ in range(2):  # the same definition run again (a notebook cell): no error

            def rerun(task, episode) -> float:
                return 1.0

            register_check(rerun)
        assert CHECKS["rerun"] is rerun
        replacement = register_check(lambda task, episode: 0.5, name="rerun", replace=True)
        assert CHECKS["rerun"] is replacement


def test_a_function_without_a_usable_id_asks_for_one():
    with registry():

        def _9lives(task, episode) -> float:
            return 1.0

        with pytest.raises(ConfigError, match=r"gives no usable criterion id.*id='my_check'"):
            Criterion.from_check(_9lives)
        assert Criterion.from_check(_9lives, id="lives").source.check == "_9lives"


def test_a_function_registered_under_its_own_name_is_used_by_that_name():
    with registry():

        def answer_matches(task, episode) -> float:  # its __name__ is a shipped check's
            return 1.0

        register_check(answer_matches, name="my_answer_check")
        criterion = Criterion.from_check(answer_matches)
        assert criterion.source.check == "my_answer_check" and criterion.id == "my_answer_check"
