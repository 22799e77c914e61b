"""``SynthConfig``: every stage of ``toolgym synth`` in one YAML file (see examples/configs/synth_small.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolgym.envs.synth.population import PopulationConfig
from toolgym.envs.synth.toolset import ToolsConfig
from toolgym.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointConfig(_Section):
    """A policy that writes text: the offline fallback, or an OpenAI-compatible endpoint (``toolgym serve``)."""

    kind: Literal["fallback", "openai"] = "fallback"
    base_url: str | None = None
    """``openai``: for example http://127.0.0.1:8000/v1."""
    model: str = ""
    max_new_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.7, ge=0)
    timeout_s: float = Field(default=120.0, gt=0)
    token_ids: bool = True
    """Ask for token ids (vLLM's extension, which ``toolgym serve`` speaks): the token cost counts them.
    Set false for an endpoint that refuses the extension fields (the cost then reads 0)."""
    fallback: bool = True
    """``openai`` proposer: the deterministic operators fill in after an unusable reply (counted either way)."""


class TrajectoryConfig(_Section):
    """Which tasks get an episode, and what the episode runs against."""

    count: int = Field(default=100, ge=0)
    """Episodes to synthesize (the first ``count`` tasks)."""
    policy: EndpointConfig = Field(default_factory=EndpointConfig)
    """The acting policy; ``fallback`` replays each task's gold actions."""
    user: Literal["scripted", "llm"] = "scripted"
    """The simulated user: rules over the task's script, or the acting endpoint playing the user."""
    faults: dict[str, Any] = Field(default_factory=lambda: {"default": {"error": 0.05, "malformed": 0.03}})
    """``FaultConfig`` fields: the tool simulator's configured noise and failures."""
    max_simulator_errors: int | None = 3
    shard_size: int = Field(default=100, ge=1)
    concurrency: int = Field(default=64, ge=1)


class JudgeConfig(_Section):
    """Who scores each episode against its task rubric, and what is kept."""

    judge: EndpointConfig = Field(default_factory=EndpointConfig)
    """``fallback``: the offline judge (checks where a criterion is verifiable, rules elsewhere)."""
    threshold: float = Field(default=0.8, ge=0, le=1)
    """Episodes with a rubric total at least this are kept."""


class ExportConfig(_Section):
    """What the export writes besides the chat dataset."""

    tokenizer: str | None = None
    """A local tokenizer folder: also write token rows (``input_ids`` of the chat template)."""


class RayConfig(_Section):
    """Run the tools stage's shards on Ray actors instead of in-process."""

    enabled: bool = False
    workers: int = Field(default=2, ge=1)
    address: str | None = None


class SynthConfig(_Section):
    """One data-engine run."""

    name: str = Field(default="run", pattern=r"^[A-Za-z0-9_.\-]{1,40}$")
    """Names the registered envs (``synth-<name>/<agent>-v0``)."""
    seed: int = 0
    out: str = "runs/synth"
    """Output folder: the stage caches (``cache/``) and the exported data."""
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    proposer: EndpointConfig = Field(default_factory=EndpointConfig)
    population: PopulationConfig = Field(default_factory=PopulationConfig)
    trajectories: TrajectoryConfig = Field(default_factory=TrajectoryConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    ray: RayConfig = Field(default_factory=RayConfig)


def load_config(path: str | Path, **overrides: Any) -> SynthConfig:
    """Read a YAML config; a bad field is a ``ConfigError`` naming it. ``overrides`` replace top-level fields."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"synth config {path}: cannot read it ({str(exc)[:200]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"synth config {path}: expected a mapping of sections (tools, population, ...), got {type(raw).__name__}")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return SynthConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        at = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ConfigError(f"synth config {path}: field '{at}': {first['msg']}") from None
