"""The run report: counts, pass rates, what was dropped and why, diversity, judge agreement, cost.

Diversity, so a large but repetitive data set shows as such: distinct tool names, distinct
parameter shapes (types and required flags with names left out), domains covered, and the
distinct-n ratio of task instructions (distinct word n-grams over all n-grams).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.synth.evolve import schema_shape
from toolgym.envs.synth.records import ItemFailure, ToolRecord
from toolgym.envs.synth.taxonomy import Taxonomy
from toolgym.envs.types import Task


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageStats(_Model):
    """What one stage did and cost."""

    name: str
    seconds: float = 0.0
    tokens: int = 0
    """Tokens the stage's model calls used (0 offline)."""
    items: int = 0
    """Items the stage kept."""
    cache_hits: int = 0
    """Shards read back from the cache (a resumed run)."""


class Dropped(_Model):
    """Dropped items of one stage and kind, with a few examples."""

    stage: str
    kind: str
    count: int
    examples: list[str] = Field(default_factory=list)


class Diversity(_Model):
    distinct_tool_names: int = 0
    schema_shapes: int = 0
    """Distinct parameter shapes over the tools."""
    domains_covered: int = 0
    domains_total: int = 0
    operators: dict[str, int] = Field(default_factory=dict)
    difficulty: dict[str, int] = Field(default_factory=dict)
    distinct_2: float = 0.0
    """Distinct word bigrams / all bigrams of the task instructions."""
    distinct_3: float = 0.0


class Agreement(_Model):
    """Judge verdicts against check verdicts on verifiable criteria."""

    judge: str = "offline"
    pairs: int = 0
    agreement: float | None = None
    judge_pass_rate: float | None = None
    check_pass_rate: float | None = None


class SynthReport(_Model):
    """The report of one ``toolgym synth`` run (written to ``report.json``)."""

    name: str
    seed: int
    counts: dict[str, int] = Field(default_factory=dict)
    pass_rate: float | None = None
    """Kept episodes over judged episodes."""
    stages: list[StageStats] = Field(default_factory=list)
    dropped: list[Dropped] = Field(default_factory=list)
    diversity: Diversity = Field(default_factory=Diversity)
    agreement: Agreement = Field(default_factory=Agreement)


def dropped(failures: Sequence[ItemFailure], examples: int = 3) -> list[Dropped]:
    """Failures counted per (stage, kind), with the first few messages."""
    groups: dict[tuple[str, str], list[ItemFailure]] = {}
    for f in failures:
        groups.setdefault((f.stage, f.kind), []).append(f)
    return [Dropped(stage=s, kind=k, count=len(v), examples=[f"{f.item}: {f.message}"[:240] for f in v[:examples]])
            for (s, k), v in sorted(groups.items())]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct word n-grams over all word n-grams of ``texts`` (0 when there are none)."""
    grams: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        words = text.lower().split()
        grams.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def diversity(records: Sequence[ToolRecord], taxonomy: Taxonomy, tasks: Sequence[Task]) -> Diversity:
    """The diversity measures of a run's tools and tasks."""
    instructions = [t.instruction for t in tasks]
    return Diversity(
        distinct_tool_names=len({r.name for r in records}),
        schema_shapes=len({schema_shape(r.parameters) for r in records}),
        domains_covered=len({r.domain for r in records}),
        domains_total=len(taxonomy.domains),
        operators=dict(sorted(Counter(r.operator for r in records).items())),
        difficulty=dict(sorted(Counter(str(t.metadata.get("synth", {}).get("difficulty", "")) for t in tasks).items())),
        distinct_2=round(distinct_n(instructions, 2), 4),
        distinct_3=round(distinct_n(instructions, 3), 4),
    )


def agreement(pairs: Sequence[tuple[bool, bool]], judge: str) -> Agreement:
    """Agreement over (judge met, check met) pairs."""
    if not pairs:
        return Agreement(judge=judge)
    n = len(pairs)
    return Agreement(judge=judge, pairs=n, agreement=round(sum(a == b for a, b in pairs) / n, 4),
                     judge_pass_rate=round(sum(a for a, _ in pairs) / n, 4), check_pass_rate=round(sum(b for _, b in pairs) / n, 4))
