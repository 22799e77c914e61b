"""Tool simulators for tools known only by schema, and the environment that uses them.

``SchemaSimulator`` answers from the schemas (deterministic, stateful, schema-valid);
``LLMSimulator`` lets a policy play the API (validated, cached for exact replays).
``SimulatedToolEnv`` offers the tools to an agent and runs every call through a simulator.
"""

from toolgym.envs.sim.base import BackendError, SimulatedApiError, Simulator, SimulatorError
from toolgym.envs.sim.box import BackendToolBox, SchemaTool, schema_tool
from toolgym.envs.sim.env import SimulatedToolEnv
from toolgym.envs.sim.llm_sim import LLMSimulator, SimCache, SimStats
from toolgym.envs.sim.schema import SchemaError, compile_schema
from toolgym.envs.sim.schema_sim import SchemaSimulator
from toolgym.envs.sim.spec import CompiledTool, SimTool, compile_tool
from toolgym.envs.sim.state import CallRecord, SimState

__all__ = [
    "BackendError", "BackendToolBox", "CallRecord", "CompiledTool", "LLMSimulator", "SchemaError", "SchemaSimulator",
    "SchemaTool", "SimCache", "SimState", "SimStats", "SimTool", "SimulatedApiError", "SimulatedToolEnv", "Simulator",
    "SimulatorError", "compile_schema", "compile_tool", "schema_tool",
]
