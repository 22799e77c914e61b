"""A custom simulated API: typed state, tools, a policy rule, a task and its gold replay (python examples/02_custom_domain.py)."""

from pydantic import Field

from toolgym.envs.api import ApiEnv, Domain, PolicyViolation, StateModel
from toolgym.envs.digest import digest
from toolgym.envs.tools import tool
from toolgym.envs.types import Expected, GoldAction, Task, ToolCall


class Library(StateModel):  # the world: typed, hashed, snapshotted
    books: dict[str, str]  # book id -> title
    loans: dict[str, str] = Field(default_factory=dict)  # book id -> member


class LibraryApi(Domain[Library]):
    state_model = Library

    @tool
    def search(self, text: str) -> dict[str, str]:
        """Books (id -> title) whose title contains the text."""
        return {b: t for b, t in self.state.books.items() if text.lower() in t.lower()}

    @tool
    def lend(self, book_id: str, member: str) -> str:
        """Lend a book (by id) to a member."""
        if book_id in self.state.loans:  # the policy rule, enforced in the tool
            raise PolicyViolation(f"{book_id} is already lent; offer to reserve it instead")
        self.state.loans[book_id] = member
        return f"{book_id} lent to {member}"


class LibraryEnv(ApiEnv):  # the environment: the domain plus the policy the agent reads
    domain, system_prompt = LibraryApi, "You are a librarian. Policy: never lend a book that is already out."


start = Library(books={"b1": "Dune", "b2": "Emma"})
final = start.model_copy(deep=True)
final.loans["b1"] = "ann"  # the expected outcome, written down independently of the tools
task = Task(
    id="lend-dune", instruction="Please lend Dune to ann.", initial_state=start.model_dump(),
    gold_actions=[GoldAction(name="search", arguments={"text": "dune"}), GoldAction(name="lend", arguments={"book_id": "b1", "member": "ann"})],
    gold_answer="Dune is lent to ann.", expected=Expected(state_digest=digest(final), outputs=["ann"]),
)  # fmt: skip

env = LibraryEnv()  # replay the gold actions as model text (Hermes tool-call format)
obs, _ = env.reset(options={"task": task})
print("tools:", [t.name for t in obs.tools])
for action in task.gold_actions:
    obs, *_ = env.step(env.format.render_turn("", [ToolCall(id="1", name=action.name, arguments=action.arguments)]))
    print("tool:", obs.messages[0].content)
snap = env.snapshot()  # fork here: a second loan of the same book breaks the policy
obs, *_ = env.step(
    env.format.render_turn("", [ToolCall(id="2", name="lend", arguments={"book_id": "b1", "member": "bo"})])
)
print("refused:", obs.messages[0].content)
env.restore(snap)
_, reward, terminated, _, info = env.step(task.gold_answer)
print(f"reward {reward}, reached expected state: {info['state_digest'] == task.expected.state_digest}")
