"""Synthesized (agent, tools, tasks) sets as registered RL environments.

``toolgym synth`` exports ``tools.jsonl``, ``agents.jsonl``, ``tasks.jsonl`` and
``manifest.json`` into its output folder; ``register_run(folder)`` registers one
``SimulatedToolEnv`` per agent as ``synth-<run>/<agent>-v0`` (its tools, its tasks, its system
prompt, a scripted user), so ``toolgym.make``, ``toolgym rollout`` and ``toolgym train`` take
them by id. Tools are compiled the first time an agent's env is made, once per process.

Importing this module registers every run folder named in ``TOOLGYM_SYNTH_RUNS``
(separated by ``os.pathsep``), which is how a new process finds them:

    TOOLGYM_SYNTH_RUNS=runs/synth toolgym rollout synth-run/a00000_clinic-v0 --import toolgym.envs.synth.registered
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from toolgym.envs.sim.env import SimulatedToolEnv
from toolgym.envs.sim.spec import CompiledTool
from toolgym.envs.synth.cache import read_jsonl
from toolgym.envs.synth.evolve import compile_cached
from toolgym.envs.synth.models import AgentSpec
from toolgym.envs.synth.records import ToolRecord
from toolgym.envs.types import Task
from toolgym.envs.users.scripted import ScriptedUser
from toolgym.errors import ConfigError

ENV_VAR = "TOOLGYM_SYNTH_RUNS"
FILES = ("manifest.json", "tools.jsonl", "agents.jsonl", "tasks.jsonl")


class _Run:
    """One exported run, read once: tools by name, agents by name, tasks by agent."""

    def __init__(self, folder: Path):
        missing = [f for f in FILES if not (folder / f).exists()]
        if missing:
            raise ConfigError(f"{folder} is not an exported synth run: {missing} missing (run `toolgym synth CONFIG` to the end)")
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.tools = {r["tool"]["spec"]["function"]["name"]: r for r in read_jsonl(folder / "tools.jsonl")}
        self.agents = {a["name"]: AgentSpec.model_validate(a) for a in read_jsonl(folder / "agents.jsonl")}
        self.tasks: dict[str, list[dict[str, Any]]] = {}
        for t in read_jsonl(folder / "tasks.jsonl"):
            self.tasks.setdefault(t["metadata"]["agent"], []).append(t)
        self.compiled: dict[str, CompiledTool] = {}

    def tool(self, name: str) -> CompiledTool:
        if name not in self.compiled:
            self.compiled[name] = compile_cached(ToolRecord.model_validate(self.tools[name]).tool)
        return self.compiled[name]


_RUNS: dict[Path, _Run] = {}


def _run(folder: Path) -> _Run:
    if folder not in _RUNS:
        _RUNS[folder] = _Run(folder)
    return _RUNS[folder]


def make_agent_env(folder: str, agent: str, **kwargs: Any) -> SimulatedToolEnv:
    """The environment of ``agent`` in the exported run at ``folder`` (keyword arguments go to ``SimulatedToolEnv``)."""
    run = _run(Path(folder).resolve())
    spec = run.agents[agent]
    tasks = [Task.model_validate(t) for t in run.tasks.get(agent, [])]
    kwargs.setdefault("user", ScriptedUser())
    return SimulatedToolEnv([run.tool(n) for n in spec.tools], tasks=tasks or None, system_prompt=spec.system_prompt, **kwargs)


def register_run(folder: str | Path) -> list[str]:
    """Register every agent of the exported run at ``folder``; returns the env ids."""
    from toolgym.envs.registry import register

    path = Path(folder).resolve()
    run = _run(path)
    ids = []
    for name in run.agents:
        env_id = f"synth-{run.manifest['name']}/{name}-v0"
        n = len(run.tasks.get(name, []))
        register(env_id, functools.partial(make_agent_env, str(path), name), description=f"synthesized agent {name}: {len(run.agents[name].tools)} tools, {n} tasks")
        ids.append(env_id)
    return ids


def register_from_env() -> list[str]:
    """Register the runs named in ``TOOLGYM_SYNTH_RUNS``."""
    return [i for folder in os.environ.get(ENV_VAR, "").split(os.pathsep) if folder.strip() for i in register_run(folder.strip())]


register_from_env()
