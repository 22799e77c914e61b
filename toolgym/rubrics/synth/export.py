"""Export: the kept trajectories as a Hugging Face dataset, and the env sets as files.

Dataset rows are OpenAI chat format: ``messages`` (system, user, assistant with ``tool_calls``
whose ``arguments`` are JSON strings, tool results with ``tool_call_id``), ``tools`` (the
agent's tool specs as a JSON string, because tool schemas differ in shape from row to row and
Arrow columns cannot), plus ids, difficulty, rubric total and per-criterion verdicts. With a
tokenizer, ``input_ids`` of the chat template are added (token rows).

Everything is written to a temporary path and renamed into place, so a killed export leaves
the previous output or none, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolgym.envs.synth.cache import atomic_write_text, write_jsonl
from toolgym.envs.synth.models import AgentSpec
from toolgym.envs.synth.records import ToolRecord
from toolgym.envs.types import AssistantMessage, Message, SystemMessage, Task, ToolMessage, UserMessage
from toolgym.rollouts.episode import Episode
from toolgym.rubrics.score import Score


def openai_message(message: Message) -> dict[str, Any]:
    """One message in the OpenAI chat format, with every key present (Arrow needs one row shape)."""
    row: dict[str, Any] = {"role": message.role, "content": message.content, "tool_calls": [], "tool_call_id": None, "name": None}
    if isinstance(message, AssistantMessage):
        row["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments, sort_keys=True)}}
                             for c in message.tool_calls]
    elif isinstance(message, ToolMessage):
        row["tool_call_id"], row["name"] = message.tool_call_id, message.name
    elif not isinstance(message, (SystemMessage, UserMessage)):
        row["content"] = str(getattr(message, "content", ""))
    return row


def sft_row(episode: Episode, score: Score) -> dict[str, Any]:
    """The dataset row of one kept episode."""
    synth = episode.task.metadata.get("synth", {})
    return {
        "id": episode.task.id,
        "env_id": episode.env_id,
        "agent": episode.task.metadata.get("agent", ""),
        "difficulty": synth.get("difficulty", ""),
        "messages": [openai_message(m) for m in episode.messages],
        "tools": json.dumps([t.model_dump(mode="json") for t in episode.tools], sort_keys=True),
        "score": float(score.total or 0.0),
        "criteria": json.dumps({c.id: c.value for c in score.criteria}, sort_keys=True),
        "reward": float(episode.reward),
    }


def add_token_rows(rows: list[dict[str, Any]], tokenizer_path: str) -> None:
    """Add ``input_ids``: each row's messages and tools through the tokenizer's chat template."""
    from transformers import AutoTokenizer  # only with export.tokenizer set

    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    for row in rows:
        messages = [_for_template(m) for m in row["messages"]]
        tools = json.loads(row["tools"])
        encoded: Any = tok.apply_chat_template(messages, tools=tools or None, tokenize=True)
        # Newer transformers return an encoding (a mapping), older ones the id list.
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        row["input_ids"] = [int(i) for i in ids]


def _for_template(m: dict[str, Any]) -> dict[str, Any]:
    """A row's message as chat templates take it: no empty keys, tool-call arguments as objects (a new dict; the row is kept)."""
    out = {k: v for k, v in m.items() if v not in (None, []) and k != "tool_calls"}
    if m.get("tool_calls"):
        out["tool_calls"] = [{**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}} for c in m["tool_calls"]]
    return out


def write_dataset(rows: list[dict[str, Any]], path: Path) -> None:
    """``rows`` as a dataset at ``path`` (``datasets.load_from_disk`` reads it), replaced atomically."""
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # the run has its own progress display; the user's setting is restored below
    try:
        features = _features(bool(rows and "input_ids" in rows[0]))
        # By column, and one shard: a run that kept nothing still exports a 0-row dataset that loads.
        columns = {k: [r[k] for r in rows] for k in features}
        datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(tmp / "data"), num_shards=1)
        _swap(tmp / "data", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not quiet:
            datasets.enable_progress_bars()


def _features(tokens: bool) -> Any:
    import datasets

    call = {"id": datasets.Value("string"), "type": datasets.Value("string"),
            "function": {"name": datasets.Value("string"), "arguments": datasets.Value("string")}}
    message = {"role": datasets.Value("string"), "content": datasets.Value("string"), "tool_calls": [call],
               "tool_call_id": datasets.Value("string"), "name": datasets.Value("string")}
    fields: dict[str, Any] = {"id": datasets.Value("string"), "env_id": datasets.Value("string"), "agent": datasets.Value("string"),
                              "difficulty": datasets.Value("string"), "messages": [message], "tools": datasets.Value("string"),
                              "score": datasets.Value("float64"), "criteria": datasets.Value("string"), "reward": datasets.Value("float64")}
    if tokens:
        fields["input_ids"] = datasets.Sequence(datasets.Value("int64"))
    return datasets.Features(fields)


def _swap(new: Path, path: Path) -> None:
    """Put folder ``new`` at ``path``: an old one is moved aside first, then removed."""
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)


def write_envs(out: Path, name: str, records: Sequence[ToolRecord], agents: Sequence[AgentSpec], tasks: Sequence[Task], env_ids: list[str]) -> None:
    """The files ``toolgym.envs.synth.registered.register_run`` reads; the manifest last, so it marks a whole export."""
    (out / "manifest.json").unlink(missing_ok=True)
    write_jsonl(out / "tools.jsonl", (r.model_dump(mode="json", exclude_none=True) for r in records))
    write_jsonl(out / "agents.jsonl", (a.model_dump(mode="json") for a in agents))
    write_jsonl(out / "tasks.jsonl", (t.model_dump(mode="json", exclude_defaults=True) for t in tasks))
    atomic_write_text(out / "manifest.json", json.dumps({"name": name, "env_ids": env_ids}, indent=1) + "\n")
