"""How big and how deep a parsed rubric is once shared parts are expanded, measured without expanding.

YAML anchors and aliases let a few lines stand for a huge tree (an "alias bomb": an alias list
whose items are aliases of alias lists) or for a node that holds itself. ``yaml.safe_load``
builds either quickly, as shared references; whatever walks the result next (validation, the
NaN scan) would expand it and run for hours, or forever. ``find_problem`` measures each
distinct node once, so its cost is that of the text, and names the field where the problem is.

>>> shared = ["x"] * 400
>>> find_problem({"criteria": [shared] * 400}, max_values=10_000)
(('criteria',), 'holds 160,401 values once YAML aliases are expanded; a rubric holds at most 10,000 (an alias repeating aliases multiplies them)')
"""

from __future__ import annotations

from collections import Counter
from typing import Any

MAX_VALUES = 100_000
"""Most values (containers and scalars) a rubric may hold with its aliases expanded."""
MAX_DEPTH = 64
"""Deepest nesting of a rubric; a real one needs a few levels."""

Loc = tuple[str | int, ...]


def _children(node: Any) -> list[tuple[str | int, Any]]:
    if isinstance(node, dict):
        return [(key if isinstance(key, (str, int)) else repr(key), value) for key, value in node.items()]
    if isinstance(node, (list, tuple)):
        return list(enumerate(node))
    return []


def _container(node: Any) -> bool:
    return isinstance(node, (dict, list, tuple))


class _Measure:
    """Sizes, depths and reference counts of every distinct container under a root."""

    def __init__(self, root: Any):
        self.size: dict[int, int] = {}
        self.depth: dict[int, int] = {}
        self.refs: Counter[int] = Counter()
        self.cycle: Loc | None = None
        self._walk(root)

    def _walk(self, root: Any) -> None:
        # Iterative post-order (a deep rubric must not hit the recursion limit); each distinct
        # container is measured once, however often aliases repeat it.
        open_ids = {id(root)}
        stack: list[tuple[Any, Loc, Any]] = [(root, (), iter(_children(root)))]
        while stack:
            node, loc, pending = stack[-1]
            for key, child in pending:
                if not _container(child):
                    continue
                self.refs[id(child)] += 1
                if id(child) in open_ids:
                    self.cycle = (*loc, key)
                    return
                if id(child) not in self.size:
                    open_ids.add(id(child))
                    stack.append((child, (*loc, key), iter(_children(child))))
                    break
            else:
                stack.pop()
                open_ids.discard(id(node))
                kids = [c for _, c in _children(node)]
                self.size[id(node)] = 1 + sum(self.size[id(c)] if _container(c) else 1 for c in kids)
                self.depth[id(node)] = 1 + max((self.depth[id(c)] for c in kids if _container(c)), default=0)


def find_problem(data: Any, *, max_values: int = MAX_VALUES, max_depth: int = MAX_DEPTH) -> tuple[Loc, str] | None:
    """The first shape problem of ``data`` as (field path, what is wrong), or None.

    Problems: a container that holds itself (a YAML alias inside its own anchor), more than
    ``max_values`` values once shared parts are expanded, nesting deeper than ``max_depth``.
    """
    if not _container(data):
        return None
    m = _Measure(data)
    if m.cycle is not None:
        return m.cycle, "holds itself (a YAML alias inside its own anchor); a rubric is a tree"
    if m.size[id(data)] > max_values:
        loc, node = _to_big(data, m, max_values)
        return loc, (
            f"holds {m.size[id(node)]:,} values once YAML aliases are expanded; a rubric holds at most {max_values:,} "
            "(an alias repeating aliases multiplies them)"
        )
    if m.depth[id(data)] > max_depth:
        return _to_deep(data, m, max_depth), (
            f"nests deeper than {max_depth} levels ({m.depth[id(data)]:,} in all); a rubric needs a few levels only"
        )
    return None


def _to_big(data: Any, m: _Measure, max_values: int) -> tuple[Loc, Any]:
    """The outermost over-large field: down through over-large children, stopping at a shared one."""
    loc: Loc = ()
    node = data
    while True:
        big = [(key, child) for key, child in _children(node) if _container(child) and m.size[id(child)] > max_values]
        if not big:
            return loc, node
        key, node = big[0]
        loc = (*loc, key)
        if m.refs[id(node)] > 1:  # an alias: the field that repeats it is the one to name
            return loc, node


def _to_deep(data: Any, m: _Measure, max_depth: int) -> Loc:
    """The path down the deepest branch, ``max_depth`` levels long."""
    loc: Loc = ()
    node = data
    for _ in range(max_depth):
        deeper = [(m.depth[id(child)], key, child) for key, child in _children(node) if _container(child)]
        if not deeper:
            break
        _, key, node = max(deeper, key=lambda t: t[0])
        loc = (*loc, key)
    return loc
