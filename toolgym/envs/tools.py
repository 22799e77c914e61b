"""``@tool``: a typed, documented Python function becomes a tool the model can call.

The spec comes from the signature (JSON Schema through pydantic) and the Google-style
docstring (descriptions). Calls are validated against the same pydantic model before the
function runs, so the function body only ever sees well-typed arguments.

>>> @tool
... def add(a: float, b: float) -> float:
...     '''Add two numbers.
...
...     Args:
...         a: First term.
...         b: Second term.
...     '''
...     return a + b
>>> add.spec.function.name
'add'
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from toolgym.envs.docstrings import parse_docstring
from toolgym.envs.types import FunctionSpec, ToolSpec
from toolgym.errors import ToolDefinitionError, did_you_mean

_SKIP = ("self", "cls")


@dataclass(frozen=True)
class Tool:
    """A callable plus its spec and argument validator.

    ``fn`` is the plain function; for a method it still expects ``self`` first, and
    ``bind`` gives a ``BoundTool`` for one instance.
    """

    fn: Callable[..., Any]
    spec: ToolSpec
    args_model: type[BaseModel]
    is_method: bool
    is_async: bool
    timeout_s: float | None = None
    """Deadline for this tool; sync tools with a deadline run in a worker thread."""
    param_names: tuple[str, ...] = field(default=())
    read_only: bool = False
    """The tool never changes the world, so a failed call has nothing to roll back and the
    environment skips saving the world before it (see ``ToolEnv.atomic_calls``)."""

    @property
    def name(self) -> str:
        return self.spec.function.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # Accessed on an instance, a method tool behaves like a bound method.
        if obj is None or not self.is_method:
            return self
        return functools.partial(self.fn, obj)

    def bind(self, owner: Any) -> BoundTool:
        fn = functools.partial(self.fn, owner) if self.is_method else self.fn
        return BoundTool(self, fn)

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Validated keyword arguments, or ``ArgumentError`` with a message for the model."""
        if not isinstance(arguments, dict):
            raise ArgumentError(
                f"arguments of {self.name!r} must be a JSON object, got {type(arguments).__name__}"
            )
        try:
            # The validator itself: model_validate's Python wrapper costs as much again per call.
            model = self.args_model.__pydantic_validator__.validate_python(arguments)
        except ValidationError as exc:
            raise ArgumentError(self._explain(exc, arguments)) from None
        return model.__dict__  # exactly the declared parameters (extra keys are forbidden)

    def _explain(self, exc: ValidationError, arguments: dict[str, Any]) -> str:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "arguments"
            if err["type"] == "missing":
                problems.append(f"missing required argument {where!r}")
            elif err["type"] == "extra_forbidden":
                hint = did_you_mean(str(err["loc"][0]), self.param_names)
                problems.append(f"unexpected argument {where!r}.{hint}".rstrip("."))
            else:
                value = repr(err.get("input"))[:60]
                problems.append(f"argument {where!r}: {err['msg'].lower()} (got {value})")
        signature = ", ".join(self.param_names) or "no arguments"
        return f"invalid arguments for {self.name!r}: " + "; ".join(problems) + f". Expected: {signature}."


@dataclass(frozen=True)
class BoundTool:
    """A tool attached to the object whose state it reads and writes."""

    tool: Tool
    call: Callable[..., Any]

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def spec(self) -> ToolSpec:
        return self.tool.spec


class ArgumentError(ValueError):
    """The model's arguments do not fit the tool's signature."""


class PolicyViolation(Exception):
    """A tool refuses an action its domain's policy forbids; the message says which rule and what to do.

    Counted as the error kind ``policy_violation`` (the agent broke a rule), apart from
    ``tool_exception`` (the tool crashed).
    """


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    read_only: bool = False,
) -> Any:
    """Turn a typed function or method with a Google-style docstring into a ``Tool``.

    Args:
        fn: The function (when used as ``@tool`` without parentheses).
        name: Tool name; defaults to the function's name.
        description: Overrides the docstring summary.
        timeout_s: Per-call deadline (else the task's ``limits.tool_timeout_s``). A sync tool
            with one always runs on a worker thread; see ``toolgym.envs.deadline`` for the policy.
        read_only: The tool only reads the world. Its calls skip the rollback save; a tool that
            says so and writes anyway keeps a failed call's partial change.

    Raises:
        ToolDefinitionError: a parameter has no type hint, or there is no docstring.
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        return make_tool(f, name=name, description=description, timeout_s=timeout_s, read_only=read_only)

    return wrap(fn) if fn is not None else wrap


def make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    read_only: bool = False,
) -> Tool:
    """Build a ``Tool`` from a function (the work behind ``@tool``)."""
    if isinstance(fn, Tool):
        return fn
    qualname = getattr(fn, "__qualname__", repr(fn))
    summary, arg_docs = parse_docstring(inspect.getdoc(fn))
    summary = description or summary
    if not summary:
        raise ToolDefinitionError(
            f"tool {qualname} has no docstring: write a Google-style docstring whose first "
            "line says what the tool does (the model reads it)"
        )
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # unresolvable forward reference
        raise ToolDefinitionError(f"tool {qualname}: cannot resolve type hints ({exc})") from exc
    params = list(inspect.signature(fn).parameters.values())
    is_method = bool(params) and params[0].name in _SKIP
    if is_method:
        params = params[1:]
    fields: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolDefinitionError(
                f"tool {qualname}: parameter '{p.name}' is *args/**kwargs; tools need named parameters"
            )
        if p.name not in hints:
            raise ToolDefinitionError(
                f"tool {qualname}: parameter '{p.name}' has no type hint; annotate it "
                f"(for example '{p.name}: str') so the model knows what to send"
            )
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints[p.name], default)
    tool_name = name or fn.__name__
    args_model = create_model(
        f"{tool_name}_args", __config__=ConfigDict(extra="forbid"), **fields
    )
    parameters = _clean_schema(args_model.model_json_schema(), arg_docs)
    try:
        spec = ToolSpec(function=FunctionSpec(name=tool_name, description=summary, parameters=parameters))
    except ValidationError as exc:
        raise ToolDefinitionError(f"tool {qualname}: invalid tool name {tool_name!r}: {exc}") from exc
    return Tool(
        fn=fn,
        spec=spec,
        args_model=args_model,
        is_method=is_method,
        is_async=inspect.iscoroutinefunction(fn),
        timeout_s=timeout_s,
        param_names=tuple(fields),
        read_only=read_only,
    )


def _clean_schema(schema: dict[str, Any], arg_docs: dict[str, str]) -> dict[str, Any]:
    """Drop pydantic's titles and add the docstring descriptions."""
    schema.pop("title", None)
    props = schema.setdefault("properties", {})
    for pname, prop in props.items():
        prop.pop("title", None)
        if pname in arg_docs and arg_docs[pname]:
            prop["description"] = arg_docs[pname]
    for definition in schema.get("$defs", {}).values():
        definition.pop("title", None)
        for prop in definition.get("properties", {}).values():
            prop.pop("title", None)
    schema["type"] = "object"
    return schema


def collect_tools(owner: Any) -> list[BoundTool]:
    """Every ``Tool`` defined on ``owner``'s class (or module attributes), bound to it."""
    found: dict[str, BoundTool] = {}
    for klass in reversed(type(owner).__mro__):
        for attr in vars(klass).values():
            if isinstance(attr, Tool):
                found[attr.name] = attr.bind(owner)
    return list(found.values())
