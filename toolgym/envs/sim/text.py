"""Whether data holds only text that UTF-8 can carry.

A JSON escape such as ``"\\ud800"`` decodes to a lone surrogate: a Python string that no
tokenizer, file or server can encode. Simulator and server outputs holding one are broken
backend output (``SimulatorError``); model arguments holding one are the model's mistake
(an error observation), and are never sent on to a server.

>>> invalid_text_at({"notes": [{"title": "ok"}, {"title": "bad \\ud800"}]})
'output.notes[1].title'
>>> invalid_text_at({"fine": ["text", 1, None]}) is None
True
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def is_valid_text(text: str) -> bool:
    """Whether ``text`` has no lone surrogate (so it encodes as UTF-8)."""
    return _SURROGATE.search(text) is None


def invalid_text_at(value: Any, root: str = "output") -> str | None:
    """Where in ``value`` the first string (key or value) with a lone surrogate is, else None.

    Args:
        value: JSON-like data (dicts, lists, tuples, scalars); shared or cyclic parts are visited once.
        root: The name of ``value`` itself in the returned path.

    Returns:
        A path such as ``"output.items[2].name"`` (``"a key of output.items[2]"`` for a key).
    """
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:  # depth-first, in document order (children pushed in reverse)
        node, path = stack.pop()
        if isinstance(node, (str, _Key)):
            if not is_valid_text(str(node)):
                return f"a key of {path}" if isinstance(node, _Key) else path
            continue
        if not isinstance(node, (dict, list, tuple)) or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            for key, child in reversed(node.items()):
                stack.append((child, f"{path}.{key}"))
                if isinstance(key, str):
                    stack.append((_Key(key), path))
        else:
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(node))))
    return None


class _Key(str):
    """A dict key on the walk's stack (reported as "a key of ..." rather than as a value)."""
