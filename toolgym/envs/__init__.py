"""What the agent acts in: typed messages, tools, tool-call formats, ``ToolEnv`` and the registry."""

from toolgym.envs.checker import EnvCheckError, check_env
from toolgym.envs.dispatch import ToolBox
from toolgym.envs.env import EnvSnapshot, ToolEnv
from toolgym.envs.formats import FORMATS, ParsedTurn, get_format
from toolgym.envs.registry import make, register, registered
from toolgym.envs.taskfile import load_tasks, save_tasks
from toolgym.envs.tools import Tool, tool
from toolgym.envs.types import (
    AssistantMessage,
    Expected,
    GoldAction,
    Limits,
    Message,
    Observation,
    StopReason,
    SystemMessage,
    Task,
    ToolCall,
    ToolError,
    ToolMessage,
    ToolResult,
    ToolSpec,
    UserMessage,
)

__all__ = [
    "AssistantMessage", "EnvCheckError", "EnvSnapshot", "Expected", "FORMATS", "GoldAction", "Limits",
    "Message", "Observation", "ParsedTurn", "StopReason", "SystemMessage", "Task", "Tool", "ToolBox",
    "ToolCall", "ToolEnv", "ToolError", "ToolMessage", "ToolResult", "ToolSpec", "UserMessage",
    "check_env", "get_format", "load_tasks", "make", "register", "registered", "save_tasks", "tool",
]
