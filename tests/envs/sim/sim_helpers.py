"""Tool specs and fakes shared by the simulator tests (imported by name: tests are not a package)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from toolgym.envs.types import AssistantMessage, ToolCall
from toolgym.policy import PolicyRequest, PolicyTurn

NOTE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "title": {"type": "string", "maxLength": 40},
        "body": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "stars": {"type": "integer", "minimum": 0, "maximum": 5},
    },
    "required": ["id", "title", "created_at", "stars"],
}


def spec(name: str, props: dict[str, Any], required: Sequence[str] = (), returns: Any = None, description: str = "") -> dict[str, Any]:
    tool: dict[str, Any] = {
        "type": "function",
        "function": {"name": name, "description": description or f"The {name} call.",
                     "parameters": {"type": "object", "properties": props, "required": list(required)}},
    }
    if returns is not None:
        tool["returns"] = returns
    return tool


def notes_tools() -> list[dict[str, Any]]:
    """A small notes API with declared return schemas, plus a weather lookup."""
    note_id = {"note_id": {"type": "string"}}
    return [
        spec("create_note", {"title": {"type": "string"}, "body": {"type": "string"}}, ["title"], NOTE, "Create a note."),
        spec("get_note", note_id, ["note_id"], NOTE, "Read a note."),
        spec("update_note", {**note_id, "body": {"type": "string"}}, ["note_id"], NOTE, "Change a note's body."),
        spec("delete_note", note_id, ["note_id"], {"type": "object", "properties": {"id": {"type": "string"}, "deleted": {"type": "boolean"}}, "required": ["deleted"]}, "Delete a note."),
        spec("list_notes", {"limit": {"type": "integer"}}, [], {"type": "object", "properties": {"notes": {"type": "array", "items": NOTE}, "total": {"type": "integer"}}, "required": ["notes", "total"]}, "List notes."),
        spec("get_weather", {"city": {"type": "string"}}, ["city"], {"type": "object", "properties": {"temp_c": {"type": "number", "minimum": -40, "maximum": 45}, "sky": {"enum": ["clear", "cloudy", "rain"]}}, "required": ["temp_c", "sky"]}, "Current weather in a city."),
    ]


def act(env: Any, name: str, **arguments: Any) -> tuple[Any, dict[str, Any]]:
    """Step one call; returns (the tool message, info)."""
    obs, _, _, _, info = env.step(AssistantMessage(tool_calls=[ToolCall(id=f"c{len(env.messages)}", name=name, arguments=arguments)]))
    return obs.messages[0], info


def output(env: Any, name: str, **arguments: Any) -> Any:
    """The parsed output of one successful call."""
    message, _ = act(env, name, **arguments)
    if message.error is not None:
        raise AssertionError(f"{name} failed: {message.content}")
    return json.loads(message.content)


class FakePolicy:
    """A deterministic policy: ``reply(request) -> text``; records every request."""

    def __init__(self, reply: Callable[[PolicyRequest], str | PolicyTurn]):
        self.reply = reply
        self.requests: list[PolicyRequest] = []

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        self.requests.extend(requests)
        out = []
        for r in requests:
            turn = self.reply(r)
            out.append(turn if isinstance(turn, PolicyTurn) else PolicyTurn(text=turn))
        return out
