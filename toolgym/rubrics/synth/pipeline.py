"""``run_synth``: the data engine's stages, each with its cache, then the export and the report.

    tools -> agents -> tasks -> trajectories -> judge -> export

Every stage reads what an earlier run (killed or not) left in ``<out>/cache/<stage>/`` and
computes only the missing shards; the caches are keyed by the config, so the output of a
resumed run equals the output of an uninterrupted one. Dropped items are counted by kind in
the report; the export writes whole files or nothing.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolgym.envs.synth.cache import StageCache, atomic_write_text, fingerprint
from toolgym.envs.synth.evolve import FallbackProposer, PolicyProposer, compile_cached
from toolgym.envs.synth.models import AgentSpec
from toolgym.envs.synth.population import ToolGraph, build_agents, build_tasks
from toolgym.envs.synth.records import ItemFailure, ToolRecord
from toolgym.envs.synth.toolset import Mapper, ToolsOutput, build_tools, local_map
from toolgym.envs.types import Task
from toolgym.policy import SamplingParams
from toolgym.rollouts.episode import Episode
from toolgym.rubrics.score import Score
from toolgym.rubrics.synth.config import SynthConfig
from toolgym.rubrics.synth.export import sft_row, write_dataset, write_envs
from toolgym.rubrics.synth.report import StageStats, SynthReport, agreement, diversity, dropped
from toolgym.rubrics.synth.trajectories import (
    agreement_pairs,
    endpoint,
    env_id,
    judge_episodes,
    make_judge,
    synthesize_episodes,
    verdict,
)

Advance = Callable[[str, int, int | None], None]
"""``advance(stage, done, total)``: progress of a stage (a progress bar, a log line)."""


@dataclass
class SynthRun:
    """What a run produced (in memory; the same is on disk under ``out``)."""

    config: SynthConfig
    out: Path
    report: SynthReport
    tools: list[ToolRecord] = field(default_factory=list)
    agents: list[AgentSpec] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    env_ids: list[str] = field(default_factory=list)


class _Stages:
    """Timing, token and failure bookkeeping shared by the stages of one run."""

    def __init__(self, advance: Advance | None):
        self.stats: list[StageStats] = []
        self.failures: list[ItemFailure] = []
        self.advance = advance or (lambda stage, done, total: None)

    @contextmanager
    def stage(self, name: str) -> Iterator[StageStats]:
        stats = StageStats(name=name)
        self.advance(name, 0, None)
        start = time.perf_counter()
        yield stats
        stats.seconds = round(time.perf_counter() - start, 3)
        self.stats.append(stats)


def run_synth(cfg: SynthConfig, *, advance: Advance | None = None) -> SynthRun:
    """Run every stage of ``cfg`` (resuming from its caches) and export; returns the run."""
    out = Path(cfg.out)
    root = out / "cache"
    st = _Stages(advance)
    with st.stage("tools") as stats:
        tools = _tools_stage(cfg, root, st, stats)
    records = tools.records
    key = fingerprint([r.name for r in records], cfg.tools.model_dump(mode="json"), cfg.seed)
    with st.stage("agents") as stats:
        cache = StageCache(root, "agents", fingerprint(key, cfg.population.model_dump(mode="json")))
        rows = cache.shard("all", lambda: _agent_rows(records, cfg))
        agents = [AgentSpec.model_validate(r["agent"]) for r in rows if "agent" in r]
        st.failures += [ItemFailure.model_validate(r["failure"]) for r in rows if "failure" in r]
        stats.items, stats.cache_hits = len(agents), cache.hits
        st.advance("agents", len(agents), len(agents))
    with st.stage("tasks") as stats:
        used = {t for a in agents for t in a.tools}
        compiled = {r.name: compile_cached(r.tool) for r in records if r.name in used}
        key = fingerprint(key, cfg.population.model_dump(mode="json"), [a.name for a in agents])
        cache = StageCache(root, "tasks", key)
        tasks, failures = build_tasks(agents, compiled, cfg.population, cfg.seed, _counted(cache, st, "tasks", cfg.population.tasks))
        st.failures += failures
        stats.items, stats.cache_hits = len(tasks), cache.hits
    episodes, scores = _trajectory_stages(cfg, root, key, st, tasks, agents, compiled)
    with st.stage("export") as stats:
        run = _export(cfg, out, st, tools, agents, tasks, episodes, scores)
        stats.items = run.report.counts.get("kept", 0)
        st.advance("export", stats.items, stats.items)
    run.report.stages = st.stats
    atomic_write_text(out / "report.json", run.report.model_dump_json(indent=1) + "\n")
    return run


def _tools_stage(cfg: SynthConfig, root: Path, st: _Stages, stats: StageStats) -> ToolsOutput:
    policy = endpoint(cfg.proposer)
    proposer: Any = FallbackProposer()
    if policy is not None:
        sampling = SamplingParams(max_new_tokens=cfg.proposer.max_new_tokens, temperature=cfg.proposer.temperature)
        proposer = PolicyProposer(policy, seed=cfg.seed, sampling=sampling, fallback=cfg.proposer.fallback)
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        st.advance("tools", done[0], None)

    mapper: Mapper = ray_mapper(cfg.ray.workers, cfg.ray.address) if cfg.ray.enabled else local_map
    out = build_tools(cfg.tools, root, seed=cfg.seed, proposer=proposer, key=fingerprint(cfg.proposer.model_dump(mode="json")),
                      progress=progress, mapper=mapper)
    st.failures += out.failures
    stats.items, stats.tokens, stats.cache_hits = len(out.records), out.tokens, out.cache_hits
    st.advance("tools", len(out.records), len(out.records))
    return out


def _agent_rows(records: list[ToolRecord], cfg: SynthConfig) -> list[dict[str, Any]]:
    agents, failures = build_agents(ToolGraph(records), cfg.population, cfg.seed)
    return [{"agent": a.model_dump(mode="json")} for a in agents] + [{"failure": f.model_dump(mode="json")} for f in failures]


def _counted(cache: StageCache, st: _Stages, stage: str, total: int, key: str = "task") -> Callable[[str, Callable[[], list[dict[str, Any]]]], list[dict[str, Any]]]:
    """``cache.shard`` that also reports progress (rows holding ``key`` count as done)."""
    done = [0]

    def shard(name: str, compute: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        rows = cache.shard(name, compute)
        done[0] += sum(1 for r in rows if key in r)
        st.advance(stage, min(done[0], total), total)
        return rows

    return shard


def _trajectory_stages(cfg: SynthConfig, root: Path, key: str, st: _Stages, tasks: list[Task], agents: list[AgentSpec],
                       compiled: dict[str, Any]) -> tuple[list[Episode], list[Score]]:
    chosen = tasks[: cfg.trajectories.count]
    by_name = {a.name: a for a in agents}
    size = cfg.trajectories.shard_size
    traj_key = fingerprint(key, cfg.name, cfg.trajectories.model_dump(mode="json"))
    episodes: list[Episode] = []
    with st.stage("trajectories") as stats:
        cache = StageCache(root, "trajectories", traj_key)
        policy = endpoint(cfg.trajectories.policy)
        for start in range(0, len(chosen), size):
            run = functools.partial(_episode_rows, chosen[start : start + size], by_name, compiled, cfg, cfg.seed + start, policy)
            episodes += [Episode.model_validate(r["episode"]) for r in cache.shard(f"s{start // size:05d}", run)]
            st.advance("trajectories", len(episodes), len(chosen))
        stats.items, stats.cache_hits = len(episodes), cache.hits
        stats.tokens = sum(len(t.token_ids or []) + len(t.prompt_token_ids or []) for e in episodes for t in e.turns)
    scores: list[Score] = []
    with st.stage("judge") as stats:
        cache = StageCache(root, "judge", fingerprint(traj_key, cfg.judge.model_dump(mode="json")))
        critic = make_judge(cfg.judge, cfg.seed)
        for start in range(0, len(episodes), size):
            judge = functools.partial(_score_rows, episodes[start : start + size], critic)
            scores += [Score.model_validate(r["score"]) for r in cache.shard(f"s{start // size:05d}", judge)]
            st.advance("judge", len(scores), len(episodes))
        stats.items, stats.cache_hits = len(scores), cache.hits
        stats.tokens = sum(c.prompt_tokens + c.completion_tokens for s in scores for c in s.components)
    return episodes, scores


def _episode_rows(tasks: list[Task], agents: dict[str, AgentSpec], compiled: dict[str, Any], cfg: SynthConfig, seed: int,
                  policy: Any) -> list[dict[str, Any]]:
    episodes = asyncio.run(synthesize_episodes(tasks, agents, compiled, cfg.trajectories, run=cfg.name, seed=seed, policy=policy))
    return [{"episode": e.model_dump(mode="json")} for e in episodes]


def _score_rows(episodes: list[Episode], critic: Any) -> list[dict[str, Any]]:
    return [{"score": s.model_dump(mode="json")} for s in asyncio.run(judge_episodes(episodes, critic))]


def _export(cfg: SynthConfig, out: Path, st: _Stages, tools: ToolsOutput, agents: list[AgentSpec], tasks: list[Task],
            episodes: list[Episode], scores: list[Score]) -> SynthRun:
    kept, pairs = [], []
    for episode, score in zip(episodes, scores, strict=True):
        why = verdict(episode, score, cfg.judge.threshold)
        pairs += agreement_pairs(episode, score)
        if why is None:
            kept.append(sft_row(episode, score))
        else:
            st.failures.append(why)
    if cfg.export.tokenizer:
        from toolgym.rubrics.synth.export import add_token_rows

        add_token_rows(kept, cfg.export.tokenizer)
    write_dataset(kept, out / "dataset")
    ids = [env_id(cfg.name, a.name) for a in agents]
    write_envs(out, cfg.name, tools.records, agents, tasks, ids)
    report = SynthReport(
        name=cfg.name, seed=cfg.seed,
        counts={"tools": len(tools.records), "agents": len(agents), "tasks": len(tasks), "episodes": len(episodes), "kept": len(kept)},
        pass_rate=round(len(kept) / len(episodes), 4) if episodes else None,
        dropped=dropped(st.failures), diversity=diversity(tools.records, tools.taxonomy, tasks),
        agreement=agreement(pairs, cfg.judge.judge.kind),
    )
    return SynthRun(config=cfg, out=out, report=report, tools=tools.records, agents=agents, tasks=tasks, env_ids=ids)


def ray_mapper(workers: int, address: str | None = None) -> Mapper:
    """Run shards on ``workers`` Ray actors (each shard a call; the pool shipped once per generation)."""
    import ray

    from toolgym.envs.synth.toolset import propose_shard

    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=1)
    class ShardWorker:
        def run(self, *args: Any) -> list[dict[str, Any]]:
            return propose_shard(*args)

    actors = [ShardWorker.remote() for _ in range(workers)]  # type: ignore[attr-defined]  # ray.remote adds .remote

    def mapper(fn: Callable[..., list[dict[str, Any]]], args: list[tuple[Any, ...]]) -> list[list[dict[str, Any]]]:
        if not args:
            return []
        taxonomy, pool = ray.put(args[0][0]), ray.put(args[0][1])  # the same for every shard of a generation
        refs = [actors[i % len(actors)].run.remote(taxonomy, pool, *a[2:]) for i, a in enumerate(args)]
        return list(ray.get(refs))

    mapper.width = workers  # type: ignore[attr-defined]  # read by build_tools: shards per round
    return mapper
