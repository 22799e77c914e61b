"""The tools stage: seeds, then generations of evolution until the target count is kept.

Generation ``g`` plans ``n`` jobs from the pool kept so far (``n`` doubles the pool, capped by
what is still missing), proposes and validates them in shards (each shard a cache file, and
a unit of parallel work), then deduplicates the whole generation in job order. Everything a
shard holds is a function of the config, the pool and the job indices, so shards may run in
any order, on any worker, or be read back after a kill, and the kept tools are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.aio import run_sync
from toolgym.envs.synth.cache import StageCache, fingerprint
from toolgym.envs.synth.evolve import Deduper, FallbackProposer, validate
from toolgym.envs.synth.operators import DEFAULT_WEIGHTS, plan_jobs
from toolgym.envs.synth.records import ItemFailure, ToolRecord
from toolgym.envs.synth.sources import seeds_from_env, seeds_from_mcp, seeds_from_openapi
from toolgym.envs.synth.taxonomy import Taxonomy, generated_taxonomy, load_taxonomy

Progress = Callable[[int], None]
"""Called with the number of items just finished."""
Mapper = Callable[[Callable[..., list[dict[str, Any]]], list[tuple[Any, ...]]], list[list[dict[str, Any]]]]
"""Runs ``fn(*args)`` for each args tuple and returns the results in order (in-process or Ray)."""


class ToolsConfig(BaseModel):
    """What the tools stage makes."""

    model_config = ConfigDict(extra="forbid")

    target: int = Field(default=200, ge=1)
    """Tools to keep (seeds count)."""
    taxonomy: str | None = None
    """A taxonomy file (YAML/JSON); None: the generated one."""
    domains: int = Field(default=60, ge=1)
    """Generated taxonomy: number of domains (at most 60)."""
    entities_per_domain: int = Field(default=6, ge=1, le=20)
    openapi: list[str] = Field(default_factory=list)
    """OpenAPI 3 files whose operations are seed tools."""
    mcp: list[dict[str, Any]] = Field(default_factory=list)
    """MCP servers (``MCPServerConfig`` fields) whose tools are seeds."""
    envs: list[str] = Field(default_factory=list)
    """Shipped env ids (``toolgym/retail-v0``) or classes (``pkg.mod:Class``) whose tools are seeds."""
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    """Relative frequency of each evolution operator."""
    shard_size: int = Field(default=500, ge=1)
    """Jobs per cache shard (and per parallel work unit)."""
    dedup_threshold: float = Field(default=0.9, gt=0, le=1)
    """Parameter similarity at which two tools on one entity count as the same."""
    max_generations: int = Field(default=40, ge=1)


class ToolsOutput(BaseModel):
    """The kept tools, the dropped items, and what it took."""

    model_config = ConfigDict(extra="forbid")

    taxonomy: Taxonomy
    records: list[ToolRecord]
    failures: list[ItemFailure] = Field(default_factory=list)
    tokens: int = 0
    generations: int = 0
    cache_hits: int = 0
    """Shards read back from the cache (a resumed run)."""


def local_map(fn: Callable[..., list[dict[str, Any]]], args: list[tuple[Any, ...]]) -> list[list[dict[str, Any]]]:
    """The in-process mapper."""
    return [fn(*a) for a in args]


def load_seeds(cfg: ToolsConfig, seed: int) -> tuple[Taxonomy, list[ToolRecord], list[ItemFailure]]:
    """The taxonomy (given or generated, plus one domain per seed source) and the seed tools."""
    failures: list[ItemFailure] = []
    if cfg.taxonomy:
        taxonomy, failures = load_taxonomy(cfg.taxonomy)
    else:
        taxonomy = generated_taxonomy(cfg.domains, cfg.entities_per_domain, seed)
    loaded = [seeds_from_openapi(p) for p in cfg.openapi] + [seeds_from_mcp(s) for s in cfg.mcp] + [seeds_from_env(e) for e in cfg.envs]
    records: list[ToolRecord] = []
    for recs, domain, fails in loaded:
        failures += fails
        if domain is not None and domain.entities and domain.name not in {d.name for d in taxonomy.domains}:
            taxonomy = taxonomy.with_domain(domain)
            records += recs
        elif domain is not None and recs:
            failures.append(ItemFailure(stage="seeds", item=domain.name, kind="duplicate", message=f"a domain named {domain.name!r} is already in the taxonomy"))
    return taxonomy, records, failures


def propose_shard(taxonomy: Taxonomy, pool: Sequence[ToolRecord], generation: int, start: int, stop: int, seed: int,
                  weights: dict[str, float], proposer: Any) -> list[dict[str, Any]]:
    """Jobs ``start:stop`` of a generation, proposed and validated: rows of records or failures."""
    jobs = plan_jobs(taxonomy, pool, generation, range(start, stop), seed=seed, weights=weights)
    parents = {r.name: r for r in pool}
    proposals = run_sync(proposer.propose(jobs, taxonomy, parents))
    rows: list[dict[str, Any]] = []
    for p in proposals:
        rows += [{"failure": f.model_dump(mode="json")} for f in p.failures]
        out = validate(p, generation)
        if isinstance(out, ToolRecord):
            rows.append({"record": out.model_dump(mode="json", exclude_none=True), "tokens": p.tokens})
        elif not p.failures or out is not p.failures[-1]:
            rows.append({"failure": out.model_dump(mode="json"), "tokens": p.tokens})
        else:
            rows.append({"tokens": p.tokens})
    return rows


def build_tools(cfg: ToolsConfig, root: Path, *, seed: int = 0, proposer: Any = None, key: str = "",
                progress: Progress | None = None, mapper: Mapper = local_map) -> ToolsOutput:
    """Run the tools stage with its cache under ``root/tools``.

    Args:
        cfg: The stage config.
        root: The run's cache folder.
        seed: The run's seed.
        proposer: ``FallbackProposer()`` (default) or a ``PolicyProposer``.
        key: Fingerprint of what else the output depends on (the proposer's identity).
        progress: Told how many jobs finished.
        mapper: Runs the shards of a generation (``local_map``, or a Ray mapper).
    """
    proposer = proposer or FallbackProposer()
    taxonomy, seeds, failures = load_seeds(cfg, seed)
    cache = StageCache(root, "tools", fingerprint(cfg.model_dump(mode="json"), seed, key, taxonomy.model_dump(mode="json")))
    dedup = Deduper(cfg.dedup_threshold)
    pool: list[ToolRecord] = []
    for record in seeds:
        _keep(record, dedup, pool, failures, "seeds")
    tokens = generations = 0
    for generation in range(cfg.max_generations):
        missing = cfg.target - len(pool)
        if missing <= 0:
            break
        n = min(missing, max(cfg.shard_size, len(pool)))
        bounds = [(s, min(n, s + cfg.shard_size)) for s in range(0, n, cfg.shard_size)]
        shard_rows = _run_generation(cache, taxonomy, pool, generation, bounds, seed, cfg.weights, proposer, mapper, progress)
        before = len(pool)
        for rows in shard_rows:
            for row in rows:
                tokens += int(row.get("tokens", 0))
                if "failure" in row:
                    failures.append(ItemFailure.model_validate(row["failure"]))
                if "record" in row and len(pool) < cfg.target:
                    _keep(ToolRecord.model_validate(row["record"]), dedup, pool, failures, "tools")
        generations = generation + 1
        if len(pool) == before:  # nothing new can be made from this taxonomy and pool
            break
    # Built at the end: pydantic copies lists, so a model made earlier would not see them grow.
    return ToolsOutput(taxonomy=taxonomy, records=pool, failures=failures, tokens=tokens, generations=generations, cache_hits=cache.hits)


def _run_generation(cache: StageCache, taxonomy: Taxonomy, pool: list[ToolRecord], generation: int, bounds: list[tuple[int, int]],
                    seed: int, weights: dict[str, float], proposer: Any, mapper: Mapper, progress: Progress | None) -> list[list[dict[str, Any]]]:
    names = [f"g{generation:03d}-s{i:04d}" for i in range(len(bounds))]
    todo = [i for i, name in enumerate(names) if not cache.has(name)]
    results: dict[int, list[dict[str, Any]]] = {}
    for i, name in enumerate(names):
        if i not in todo:
            results[i] = cache.read(name)
            if progress:
                progress(bounds[i][1] - bounds[i][0])
    # Shards are written as they finish (a kill loses at most the shards in flight).
    batch = max(1, getattr(mapper, "width", 1))
    for chunk in (todo[k : k + batch] for k in range(0, len(todo), batch)):
        rows = mapper(propose_shard, [(taxonomy, pool, generation, *bounds[i], seed, weights, proposer) for i in chunk])
        for i, r in zip(chunk, rows, strict=True):
            results[i] = cache.put(names[i], r)
            if progress:
                progress(bounds[i][1] - bounds[i][0])
    return [results[i] for i in range(len(names))]


def _keep(record: ToolRecord, dedup: Deduper, pool: list[ToolRecord], failures: list[ItemFailure], stage: str) -> None:
    why = dedup.reason(record)
    if why is None:
        dedup.add(record)
        pool.append(record)
    else:
        failures.append(ItemFailure(stage=stage, item=record.name, kind="duplicate", message=why))

