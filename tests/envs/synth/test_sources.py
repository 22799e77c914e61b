"""Seed sources other than OpenAPI: an MCP server, a shipped domain, a Python class; their tools evolve and run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from toolgym.envs.synth.evolve import compile_cached
from toolgym.envs.synth.models import AgentSpec
from toolgym.envs.synth.population import PopulationConfig, agent_env, gold_replay_problem, make_task
from toolgym.envs.synth.sources import seeds_from_env
from toolgym.envs.synth.toolset import ToolsConfig, build_tools

NOTES = {"command": sys.executable, "args": [str(Path(__file__).parents[1] / "mcp" / "server_notes.py")], "name": "notes", "start_timeout_s": 60}


class Library:
    """A tiny class whose methods become tools."""

    def __init__(self) -> None:
        self.books: dict[str, str] = {}

    def add_book(self, title: str) -> str:
        """Add a book and return its id."""
        self.books[str(len(self.books))] = title
        return str(len(self.books) - 1)

    def get_book(self, book_id: str) -> str:
        """The title of a book."""
        return self.books.get(book_id, "")


@pytest.mark.slow
def test_mcp_server_tools_become_seeds_that_evolve_and_run(tmp_path):
    cfg = ToolsConfig(target=40, mcp=[NOTES], domains=2, shard_size=20)
    out = build_tools(cfg, tmp_path)  # starts the server once, lists its tools, stops it
    assert not [f for f in out.failures if f.stage == "seeds"]
    assert {"add_note", "get_note"} <= {r.name for r in out.records if r.operator == "seed" and r.domain == "notes"}
    evolved = [r for r in out.records if r.domain == "notes" and r.operator != "seed"]
    assert evolved, "no tool was evolved from the MCP seeds"
    tools = [r for r in out.records if r.domain == "notes"]
    compiled = {r.name: compile_cached(r.tool) for r in tools}
    agent = AgentSpec(name="notes_agent", system_prompt="You manage notes.", tools=sorted(compiled))
    env = agent_env(agent, compiled)
    for i in range(10):
        assert gold_replay_problem(env, make_task(agent, compiled, i, PopulationConfig(), seed=0)) is None
    env.close()


def test_shipped_domains_and_classes_are_seeds():
    retail, domain, failures = seeds_from_env("toolgym/retail-v0")
    assert not failures and len(retail) >= 8 and domain.name == "retail"
    library, domain, failures = seeds_from_env(f"{__name__}:Library")
    assert not failures and {r.name for r in library} == {"add_book", "get_book"} and domain.name == "library"
    missing, domain, failures = seeds_from_env("toolgym/nope-v0")
    assert missing == [] and domain is None and failures[0].kind == "malformed_input"
