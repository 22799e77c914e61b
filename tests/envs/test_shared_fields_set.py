"""Messages built by ``trusted()`` and entities copied by the copy-on-write worlds share one
"fields set" per class (fewer objects for the cyclic collector). Sharing must never show: an
assignment on one instance, a copy or a pickle round trip leaves every other instance's
``model_fields_set`` (and so ``model_dump(exclude_unset=True)``) as a validated instance's.
"""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from toolgym.envs.api.cow import _clone
from toolgym.envs.types import AssistantMessage, ToolCall, ToolMessage, trusted

TEXT = st.text(max_size=8)


@settings(max_examples=40, deadline=None)
@given(a=TEXT, b=TEXT, new=TEXT, error=st.none() | st.just("timeout"))
def test_assigning_a_field_of_one_trusted_message_changes_no_other(a: str, b: str, new: str, error: str | None) -> None:
    first, second = (
        trusted(ToolMessage, {"role": "tool", "tool_call_id": "c0", "name": "t", "content": text, "error": error}) for text in (a, b)
    )
    assert first.model_fields_set is second.model_fields_set  # the sharing this test keeps honest
    first.content = new
    validated = ToolMessage(role="tool", tool_call_id="c0", name="t", content=b, error=error)
    assert second.model_fields_set == validated.model_fields_set == set(ToolMessage.model_fields)
    assert second.model_dump(exclude_unset=True) == validated.model_dump(exclude_unset=True)
    assert first.content == new and second.content == b


@settings(max_examples=40, deadline=None)
@given(content=TEXT, name=TEXT)
def test_copies_and_pickles_of_trusted_messages_own_their_fields_set(content: str, name: str) -> None:
    call = trusted(ToolCall, {"id": "c0", "name": name, "arguments": {}})
    message = trusted(AssistantMessage, {"role": "assistant", "content": content, "tool_calls": [call], "raw": None, "reasoning": None})
    for copy in (message.model_copy(), message.model_copy(update={"content": "x"}), pickle.loads(pickle.dumps(message))):
        copy.model_fields_set.discard("raw")  # what exclude_unset users may do to their own copy
        assert message.model_fields_set == set(AssistantMessage.model_fields)


class Item(BaseModel):
    sku: str
    note: str = ""
    """Left unset by the data below: its instances' fields sets are not full."""


@settings(max_examples=40, deadline=None)
@given(sku=TEXT, note=TEXT, full=st.booleans())
def test_entity_copies_share_a_fields_set_only_when_it_holds_every_field(sku: str, note: str, full: bool) -> None:
    original = Item(sku=sku, note=note) if full else Item(sku=sku)
    copy = _clone(original)
    assert (copy.model_fields_set is original.model_fields_set) == full
    copy.note = note + "!"  # an assignment adds "note" to the copy's set
    assert original.model_fields_set == ({"sku", "note"} if full else {"sku"})
    assert original.model_dump(exclude_unset=True) == Item.model_validate(original.model_dump(exclude_unset=True)).model_dump(exclude_unset=True)
    assert copy.model_fields_set == {"sku", "note"}
