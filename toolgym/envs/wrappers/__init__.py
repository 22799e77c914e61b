"""Wrappers that change one thing about an environment (gymnasium style).

Tool-call wrappers subclass ``ToolCallWrapper`` and override its one method, ``call_tool``.
"""

from toolgym.envs.wrappers.faults import FaultConfig, FaultEvent, FaultInjection, FaultSpec
from toolgym.envs.wrappers.tool_call import ToolCallWrapper

__all__ = ["FaultConfig", "FaultEvent", "FaultInjection", "FaultSpec", "ToolCallWrapper"]
