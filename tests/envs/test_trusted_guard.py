"""``trusted()`` writes pydantic's per-instance internals directly (public ``model_construct``
costs about a third more per env step). These tests make a pydantic upgrade that changes those
internals fail here, loudly and naming the version, instead of corrupting messages silently:
every model class ``trusted`` is used on, with generated field values, must give an instance
that holds exactly what a validated one holds and behaves the same under every public API.
"""

from __future__ import annotations

import copy
import pathlib
import pickle
import re
from typing import Any, get_args

import pydantic
import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import toolgym
from toolgym.envs.types import (
    AssistantMessage,
    FunctionSpec,
    Observation,
    SystemMessage,
    ToolCall,
    ToolError,
    ToolErrorKind,
    ToolMessage,
    ToolResult,
    ToolSpec,
    UserMessage,
    trusted,
)
from toolgym.rollouts.env_actor import _REPLY_MODELS

VERSION = f"pydantic {pydantic.VERSION} (pydantic-core {pydantic_core.__version__})"
FIX = "update toolgym.envs.types.trusted() to match, or switch it to the public model_construct()"
MISSING = object()

TEXT = st.text(max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,  # JSON numbers
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
KINDS = st.sampled_from(get_args(ToolErrorKind))
CALLS = st.builds(ToolCall, id=TEXT, name=TEXT, arguments=st.dictionaries(TEXT, JSON, max_size=3))
SPECS = st.sampled_from([
    ToolSpec(function=FunctionSpec(name="convert")),
    ToolSpec(function=FunctionSpec(name="lookup", description="d", parameters={"type": "object", "properties": {"q": {"type": "string"}}})),
])

FIELDS: dict[type[BaseModel], dict[str, st.SearchStrategy[Any]]] = {
    ToolCall: {"id": TEXT, "name": TEXT, "arguments": st.dictionaries(TEXT, JSON, max_size=3)},
    ToolError: {"kind": KINDS, "message": TEXT},
    ToolResult: {
        "call_id": TEXT, "name": TEXT, "output": JSON,
        "error": st.none() | st.builds(ToolError, kind=KINDS, message=TEXT), "truncated": st.booleans(),
    },
    SystemMessage: {"role": st.just("system"), "content": TEXT},
    UserMessage: {"role": st.just("user"), "content": TEXT},
    AssistantMessage: {"role": st.just("assistant"), "content": TEXT, "tool_calls": st.lists(CALLS, max_size=2), "raw": st.none() | TEXT, "reasoning": st.none() | TEXT},
    ToolMessage: {"role": st.just("tool"), "tool_call_id": TEXT, "name": TEXT, "content": TEXT, "error": st.none() | KINDS},
}
MESSAGES = st.one_of(*(st.builds(cls, **FIELDS[cls]) for cls in (SystemMessage, UserMessage, AssistantMessage, ToolMessage)))
FIELDS[Observation] = {"messages": st.lists(MESSAGES, max_size=3), "tools": st.lists(SPECS, max_size=2)}
TRUSTED = tuple(FIELDS)


def slots(cls: type) -> list[str]:
    """Every per-instance slot along the MRO: where pydantic keeps an instance's state."""
    names = []
    for klass in cls.__mro__:
        declared = klass.__dict__.get("__slots__", ())
        names += [declared] if isinstance(declared, str) else [s for s in declared if s != "__weakref__"]
    return names


def state(obj: BaseModel) -> dict[str, Any]:
    return {name: getattr(obj, name, MISSING) for name in slots(type(obj))}


def test_every_class_trusted_is_called_on_is_covered():
    """The classes named at each ``trusted(`` call in the library (env_actor's ``_REPLY_MODELS``, which its
    pickling rebuilds with ``trusted``, too)."""
    root = pathlib.Path(toolgym.__file__).parent
    named = {m for p in root.rglob("*.py") for m in re.findall(r"\btrusted\((\w+)", p.read_text())} - {"cls"}
    covered = {cls.__name__ for cls in TRUSTED}
    assert named <= covered, f"add {sorted(named - covered)} to FIELDS in this test"
    assert set(_REPLY_MODELS) <= set(TRUSTED)


@pytest.mark.parametrize("cls", TRUSTED, ids=lambda c: c.__name__)
def test_trusted_classes_need_nothing_trusted_skips(cls):
    """trusted() runs no validators, post-init hooks or private-attribute setup: none may exist."""
    assert cls.__pydantic_post_init__ is None, f"{cls.__name__} has model_post_init; trusted() would skip it"
    assert not cls.__private_attributes__, f"{cls.__name__} has private attributes; trusted() sets them to None"
    assert cls.model_config.get("extra") != "allow", f"{cls.__name__} allows extras; trusted() sets none"
    assert not cls.__pydantic_root_model__


@pytest.mark.parametrize("cls", TRUSTED, ids=lambda c: c.__name__)
def test_every_instance_slot_is_set_by_trusted(cls):
    values = {name: field.get_default(call_default_factory=True) for name, field in cls.model_fields.items()}
    fast = trusted(cls, {**values, **{k: "x" for k, v in values.items() if v is pydantic_core.PydanticUndefined}})
    missing = [name for name in slots(cls) if not hasattr(fast, name)]
    assert not missing, f"{VERSION} added instance slots {missing} that trusted() does not set; {FIX}"


@pytest.mark.parametrize("cls", TRUSTED, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_trusted_instance_is_indistinguishable_from_a_validated_one(cls, data):
    drawn = data.draw(st.fixed_dictionaries(FIELDS[cls]))
    values = {name: drawn[name] for name in cls.model_fields}  # trusted() wants declaration order
    fast, slow = trusted(cls, dict(values)), cls(**values)
    where = f"{VERSION}: trusted({cls.__name__}) differs from validated construction"

    assert state(fast) == state(slow), f"{where} in its instance state; {FIX}"
    assert list(vars(fast)) == list(vars(slow)) == list(cls.model_fields), f"{where} in __dict__ keys; {FIX}"
    assert fast == slow and slow == fast, f"{where} under ==; {FIX}"
    assert fast.model_fields_set == slow.model_fields_set, f"{where} in model_fields_set; {FIX}"
    assert fast.model_dump() == slow.model_dump(), f"{where} in model_dump(); {FIX}"
    assert fast.model_dump_json() == slow.model_dump_json(), f"{where} in model_dump_json(); {FIX}"
    assert repr(fast) == repr(slow), f"{where} in repr(); {FIX}"
    assert cls.model_validate_json(fast.model_dump_json()) == slow, f"{where} after a JSON round trip; {FIX}"
    for how, make in {
        "model_copy()": lambda m: m.model_copy(),
        "model_copy(deep=True)": lambda m: m.model_copy(deep=True),
        "model_copy(update=...)": lambda m: m.model_copy(update={next(iter(cls.model_fields)): values[next(iter(cls.model_fields))]}),
        "copy.deepcopy": copy.deepcopy,
        "pickle": lambda m: pickle.loads(pickle.dumps(m)),
    }.items():
        a, b = make(fast), make(slow)
        assert state(a) == state(b) and a == b == slow, f"{where} after {how}; {FIX}"
