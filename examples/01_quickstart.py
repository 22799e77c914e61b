"""Quickstart: make an environment, step it by hand, then run a batch of episodes.

    python examples/01_quickstart.py
"""

import toolgym
from toolgym.rollouts import ChaosPolicy, ScriptedPolicy, run_episodes, sample_tasks

env = toolgym.make("toolgym/unitconv-v0")
obs, info = env.reset(seed=0)
print("user:", obs.messages[-1].content)
print("tools:", [t.name for t in obs.tools])

# A tool call in the Hermes format, then a malformed one: both come back as observations.
obs, reward, terminated, truncated, info = env.step(
    '<tool_call>{"name": "convert", "arguments": {"value": 10, "from_unit": "km", "to_unit": "mi"}}</tool_call>'
)
print("tool:", obs.messages[0].content)
obs, *_ = env.step("<tool_call>{oops</tool_call>")
print("error:", obs.messages[0].content.splitlines()[0])

# Gold replays of 100 seeded tasks, all episodes batched through one scripted policy.
tasks = sample_tasks("toolgym/unitconv-v0", n=100, seed=0)
episodes = run_episodes("toolgym/unitconv-v0", ScriptedPolicy.gold(tasks), tasks=tasks)
print("gold reached expected state:", sum(bool(e.reached_expected_state) for e in episodes), "/", len(episodes))

episodes = run_episodes("toolgym/unitconv-v0", ChaosPolicy(), n=100, seed=1)
print("chaos bad calls:", sum(sum(e.error_counts().values()) for e in episodes), "- and no crash")
