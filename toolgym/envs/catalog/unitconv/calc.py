"""A safe arithmetic evaluator: numbers, + - * / // % **, parentheses and a few functions."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from toolgym.envs.catalog.unitconv.units import PRECISION

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "exp": math.exp,
}
MAX_LENGTH = 200
MAX_POWER = 64


def evaluate(expression: str) -> float:
    """Evaluate an arithmetic expression and round to the shared precision.

    Raises:
        ValueError: anything that is not plain arithmetic, or a math error.
    """
    if len(expression) > MAX_LENGTH:
        raise ValueError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {exc.msg}") from None
    try:
        value = _eval(tree.body)
    except (ZeroDivisionError, OverflowError, RecursionError) as exc:
        raise ValueError(f"math error: {exc}") from None
    if isinstance(value, complex) or not math.isfinite(value):
        raise ValueError("the result is not a finite real number")
    return round(float(value), PRECISION)


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        # Floats, never Python ints: "9**64**..." would otherwise build integers of millions of
        # digits and hold the event loop for seconds; a float overflows at once instead.
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_POWER:
            raise ValueError(f"exponents are limited to {MAX_POWER}")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords:
        return _FUNCTIONS[node.func.id](*(_eval(a) for a in node.args))
    raise ValueError(f"unsupported element {type(node).__name__} in expression; use numbers, + - * / ** % and {', '.join(_FUNCTIONS)}")
