"""A complete small domain: state, tools, a policy, seeded task families, an eval split and a YAML rubric.

    python examples/03_complete_domain.py

The page docs/write_a_domain.md walks through each part.
"""

import random
from pathlib import Path

from pydantic import Field

import toolgym
from toolgym.envs.api import ApiEnv, Domain, NotFound, PolicyViolation, StateModel
from toolgym.envs.api.drafts import Draft, seeded_task
from toolgym.envs.api.splits import build_split
from toolgym.envs.tools import tool
from toolgym.rollouts import ChaosPolicy, ScriptedPolicy, run_episodes
from toolgym.rubrics import load_rubric, score_episodes_sync


class Ticket(StateModel):
    title: str
    priority: int  # 1 (low) .. 3 (urgent)
    status: str = "open"  # open | closed | escalated


class Desk(StateModel):  # 1. the world: typed, hashed into the state digest, snapshotted
    tickets: dict[str, Ticket] = Field(default_factory=dict)


class DeskApi(Domain[Desk]):  # 2. the tools, with the policy enforced inside them
    state_model = Desk

    @tool
    def get_ticket(self, ticket_id: str) -> dict:
        """Read one ticket.

        Args:
            ticket_id: Such as "T-12".
        """
        if ticket_id not in self.state.tickets:
            raise NotFound(f"no ticket {ticket_id}; known: {', '.join(sorted(self.state.tickets))}")
        return self.state.tickets[ticket_id].model_dump()

    @tool
    def close_ticket(self, ticket_id: str) -> str:
        """Close a ticket that is solved.

        Args:
            ticket_id: The ticket to close.
        """
        ticket = self.state.tickets[self.get_ticket(ticket_id) and ticket_id]
        if ticket.priority == 3:
            raise PolicyViolation("urgent tickets are never closed by the desk: escalate them")
        ticket.status = "closed"
        return f"{ticket_id} closed"

    @tool
    def escalate(self, ticket_id: str) -> str:
        """Hand a ticket to the on-call engineer.

        Args:
            ticket_id: The ticket to escalate.
        """
        self.get_ticket(ticket_id)
        self.state.tickets[ticket_id].status = "escalated"
        return f"{ticket_id} escalated"


# 3. task families: rng -> Draft (world before, gold calls, world after), written from the task's meaning
def _world(rng: random.Random) -> Desk:
    titles = ["printer jam", "vpn down", "password reset", "disk full", "mail bounce"]
    return Desk(tickets={f"T-{i}": Ticket(title=t, priority=rng.randint(1, 3)) for i, t in enumerate(rng.sample(titles, 3), 1)})


def close(rng: random.Random) -> Draft:
    draft = Draft(world=_world(rng))
    tid = rng.choice(sorted(draft.world.tickets))
    draft.world.tickets[tid].priority = rng.randint(1, 2)  # closable
    draft.freeze()  # from here on, edits describe the expected final world
    draft.final.tickets[tid].status = "closed"
    draft.instruction = f"The issue in ticket {tid} is fixed, please close it."
    draft.call("get_ticket", ticket_id=tid)
    draft.call("close_ticket", ticket_id=tid)
    draft.answer, draft.outputs = f"{tid} is closed.", [tid]
    return draft


def escalate(rng: random.Random) -> Draft:
    draft = Draft(world=_world(rng))
    tid = rng.choice(sorted(draft.world.tickets))
    draft.world.tickets[tid].priority = 3  # urgent: the policy says escalate, never close
    draft.freeze()
    draft.final.tickets[tid].status = "escalated"
    draft.instruction = f"Ticket {tid} is done with, close it."
    draft.call("get_ticket", ticket_id=tid)
    draft.call("escalate", ticket_id=tid)
    draft.answer, draft.outputs = f"{tid} is urgent, so I escalated it instead of closing it.", [tid]
    return draft


def generate_task(seed: int, split: str = "train") -> toolgym.Task:
    return seeded_task("helpdesk", {"close": close, "escalate": escalate}, seed, split)


class HelpDeskEnv(ApiEnv):  # 4. the environment: domain, system prompt with the policy, generator
    domain = DeskApi
    system_prompt = "You run an IT help desk. Policy: urgent (priority 3) tickets are escalated, never closed."
    task_generator = staticmethod(generate_task)


toolgym.register("examples/helpdesk-v0", HelpDeskEnv, description="IT help desk (example domain)")
toolgym.check_env(toolgym.make("examples/helpdesk-v0"))  # 5. the checker: determinism, schemas, gold reaches expected

eval_tasks = build_split(generate_task, n=50)  # 6. a fixed eval split from its own RNG stream ("eval")
gold = run_episodes("examples/helpdesk-v0", ScriptedPolicy.gold(eval_tasks), tasks=eval_tasks)
chaos = run_episodes("examples/helpdesk-v0", ChaosPolicy(), tasks=eval_tasks)
rubric = load_rubric(Path(__file__).parent / "domain_files" / "helpdesk_rubric.yaml")  # 7. the rubric
for name, episodes in (("gold", gold), ("chaos", chaos)):
    scores = [s.total for s in score_episodes_sync(episodes, rubric)]
    reached = sum(bool(e.reached_expected_state) for e in episodes)
    print(f"{name:>5}: expected state {reached}/{len(episodes)}, mean score {sum(scores) / len(scores):.3f}")
