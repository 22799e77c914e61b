from __future__ import annotations

import asyncio
import time

import pytest

from toolgym.envs.dispatch import ToolBox, to_message
from toolgym.envs.tools import collect_tools, tool
from toolgym.envs.types import ToolCall
from toolgym.errors import ToolDefinitionError


@tool
def book(city: str, nights: int = 1, tags: list[str] | None = None) -> dict:
    """Book a hotel room.

    Args:
        city: Where to stay.
        nights: How many nights
            (at least one).
        tags: Optional wishes.
    """
    if nights < 1:
        raise ValueError("nights must be at least 1")
    return {"city": city, "nights": nights, "tags": tags or []}


class Shop:
    def __init__(self):
        self.items: list[str] = []

    @tool
    def add(self, item: str) -> str:
        """Add an item to the basket.

        Args:
            item: Item name.
        """
        self.items.append(item)
        return f"{len(self.items)} items"

    @tool(timeout_s=0.05)
    def slow(self) -> str:
        """Take too long."""
        time.sleep(0.5)
        return "late"

    @tool
    async def fetch(self, delay: float) -> str:
        """Wait, then answer.

        Args:
            delay: Seconds to wait.
        """
        await asyncio.sleep(delay)
        return "fetched"

    @tool
    def blob(self) -> object:
        """Return something that is not JSON."""
        return object()

    @tool
    def big(self) -> str:
        """Return a long text."""
        return "x" * 10_000


def box() -> ToolBox:
    return ToolBox(collect_tools(Shop()) + [book.bind(None)], default_timeout_s=0.1)


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(id="c1", name=name, arguments=arguments)


def test_spec_from_signature_and_docstring():
    fn = book.spec.function
    assert fn.name == "book" and fn.description == "Book a hotel room."
    props = fn.parameters["properties"]
    assert props["city"] == {"type": "string", "description": "Where to stay."}
    assert props["nights"]["description"] == "How many nights (at least one)."
    assert props["nights"]["default"] == 1
    assert fn.parameters["required"] == ["city"]
    assert "title" not in fn.parameters


def test_method_tools_bind_to_their_instance():
    shop = Shop()
    tools = {t.name: t for t in collect_tools(shop)}
    assert set(tools) == {"add", "slow", "fetch", "blob", "big"}
    ToolBox(tools.values()).call(call("add", item="pear"))
    assert shop.items == ["pear"]
    assert shop.add("fig") == "2 items"  # still a normal method


@pytest.mark.parametrize(
    "bad,kind,fragment",
    [
        (call("bok", city="Oslo"), "unknown_tool", "Did you mean 'book'"),
        (call("book"), "invalid_arguments", "missing required argument 'city'"),
        (call("book", city="Oslo", nite=2), "invalid_arguments", "unexpected argument 'nite'"),
        (call("book", city="Oslo", nights="many"), "invalid_arguments", "argument 'nights'"),
        (call("book", city="Oslo", nights=0), "tool_exception", "nights must be at least 1"),
        (call("slow"), "timeout", "did not finish within 0.05s"),
        (call("fetch", delay=5), "timeout", "did not finish"),
    ],
)
def test_bad_calls_become_error_results(bad, kind, fragment):
    result = box().call(bad)
    assert result.error is not None and result.error.kind == kind
    assert fragment in result.error.message


async def test_async_dispatch_applies_deadline_and_runs_async_tools():
    b = box()
    assert (await b.acall(call("fetch", delay=0.0))).output == "fetched"
    assert (await b.acall(call("fetch", delay=5))).error.kind == "timeout"
    assert (await b.acall(call("slow"))).error.kind == "timeout"


def test_unserializable_output_and_truncation():
    b = box()
    result, message = to_message(b.call(call("blob")), max_chars=100)
    assert result.error.kind == "unserializable_output" and message.error == "unserializable_output"
    result, message = to_message(b.call(call("big")), max_chars=100)
    assert result.truncated and message.content.startswith("x" * 100)
    assert "[output truncated: 9900 more characters]" in message.content


def test_tool_definition_errors_name_the_parameter():
    with pytest.raises(ToolDefinitionError, match="parameter 'b' has no type hint"):

        @tool
        def f(a: int, b) -> int:
            """Doc."""
            return a

    with pytest.raises(ToolDefinitionError, match="has no docstring"):

        @tool
        def g(a: int) -> int:
            return a

    with pytest.raises(ToolDefinitionError, match=r"\*args"):

        @tool
        def h(*a: int) -> int:
            """Doc."""
            return 0
