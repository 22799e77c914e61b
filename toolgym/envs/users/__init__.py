"""Simulated users for multi-turn tasks: rule-based (``ScriptedUser``) or policy-played (``LLMUser``).

Pass one to an environment (``ToolEnv(user=...)``); without one the environment runs solo.
"""

from toolgym.envs.users.base import Fact, SimulatedUser, UserReply, UserScript, UserSimulationError, load_script
from toolgym.envs.users.llm import LLMUser
from toolgym.envs.users.scripted import ScriptedUser

__all__ = ["Fact", "LLMUser", "ScriptedUser", "SimulatedUser", "UserReply", "UserScript", "UserSimulationError", "load_script"]
