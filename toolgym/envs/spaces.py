"""Gymnasium spaces for text actions and conversation observations."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from toolgym.envs.types import Observation


class TextAction(spaces.Space):
    """Any string (assistant text), or an already parsed turn."""

    def __init__(self, max_length: int = 1_000_000, seed: int | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)
        self.max_length = max_length

    def contains(self, x: Any) -> bool:
        from toolgym.envs.formats import ParsedTurn

        return (isinstance(x, str) and len(x) <= self.max_length) or isinstance(x, ParsedTurn)

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz {}<>\":,_"))
        return "".join(self.np_random.choice(letters, size=int(self.np_random.integers(0, 64))))

    @property
    def is_np_flattenable(self) -> bool:
        return False


class ConversationSpace(spaces.Space):
    """Observations are ``Observation`` models (messages plus tool specs)."""

    def __init__(self, seed: int | None = None):
        super().__init__(shape=None, dtype=None, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, Observation)

    def sample(self, mask: Any = None, probability: Any = None) -> Observation:
        return Observation()

    @property
    def is_np_flattenable(self) -> bool:
        return False
