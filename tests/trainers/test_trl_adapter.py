"""TRL interop: the environment class, the rollout_func's rows, and TRL's GRPOTrainer running on both."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import toolgym
import toolgym.envs.registry
from toolgym.envs.types import UserMessage
from toolgym.errors import ConfigError
from toolgym.rollouts import sample_tasks
from toolgym.rubrics import rubric_for, score_episodes_sync
from toolgym.trainers.trl_adapter import (
    REWARD_COLUMN,
    ToolgymRollout,
    answer_reward,
    environment_class,
    rubric_reward,
    trl_dataset,
)

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

ENV = "toolgym/unitconv-v0"
EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "05_trl_grpo.py"


def test_environment_methods_are_the_tools_with_schemas_trl_can_read():
    from transformers.utils import get_json_schema

    cls = environment_class(ENV)
    env = cls()
    obs, _ = toolgym.make(ENV).reset(seed=0)
    public = sorted(n for n, _ in inspect.getmembers(cls, predicate=inspect.isfunction) if not n.startswith("_") and n not in ("reset", "get_reward"))
    assert public == sorted(t.name for t in obs.tools)
    for spec in obs.tools:
        schema = get_json_schema(getattr(env, spec.name))["function"]
        assert schema["name"] == spec.name
        assert schema["description"] == " ".join(spec.function.description.split())
        assert set(schema["parameters"]["properties"]) == set(spec.function.parameters["properties"])
        assert set(schema["parameters"].get("required", [])) == set(spec.function.parameters.get("required", []))
    assert get_json_schema(env.convert)["function"]["parameters"]["properties"]["value"]["type"] == "number"


@pytest.mark.parametrize("env_id", sorted(e for e in toolgym.envs.registry.registered() if e.startswith("toolgym/")))
def test_every_registered_env_gives_tool_methods_with_valid_schemas(env_id):
    from transformers.utils import get_json_schema

    cls = environment_class(env_id)
    env = cls()
    names = [n for n, _ in inspect.getmembers(cls, predicate=inspect.isfunction) if not n.startswith("_") and n not in ("reset", "get_reward")]
    assert names
    for name in names:
        schema = get_json_schema(getattr(env, name))["function"]
        assert schema["name"] == name and schema["description"]


def test_reset_opens_the_task_and_get_reward_is_the_rubric():
    tasks = sample_tasks(ENV, 2, seed=3)
    rows = trl_dataset(ENV, tasks, seed=3, for_environment=True)
    assert rows[0]["prompt"][-1] == {"role": "user", "content": ""}
    env = environment_class(ENV)()
    assert env.reset(**rows[0]) == tasks[0].instruction
    untouched = env.get_reward()
    for action in tasks[0].gold_actions:
        assert "Error" not in getattr(env, action.name)(**action.arguments)
    solved = env.get_reward()
    (expected,) = score_episodes_sync([env._episode()], rubric_for(ENV).verifiable())
    assert solved == expected.total and solved > untouched
    assert expected.criterion("state").value == 1.0
    # Bad arguments are an error observation for the model, not an exception.
    assert env.convert(value=1.0, from_unit="parsec", to_unit="C").startswith("Error")
    env.reset(**rows[1])
    assert env._episode().turns == []


def test_answer_reward_scores_the_final_answer_from_the_completion():
    task = sample_tasks(ENV, 1, seed=5)[0]
    (row,) = trl_dataset(ENV, [task], seed=5, for_environment=True)
    blind, seeing = environment_class(ENV)(), environment_class(ENV, answer_reward=True)()
    assert not hasattr(seeing, "get_reward")  # else TRL would add the answer-blind score as a reward column
    for env in (blind, seeing):
        env.reset(**row)
        for action in task.gold_actions:
            getattr(env, action.name)(**action.arguments)
    calls = {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "store", "arguments": {}}}]}
    answered = [calls, {"role": "tool", "name": "store", "content": "ok"}, {"role": "assistant", "content": task.gold_answer}]
    (with_answer,) = answer_reward([answered], environments=[seeing])
    (still_calling,) = answer_reward([[calls]], environments=[seeing])
    assert with_answer > blind.get_reward() == still_calling
    with pytest.raises(ConfigError, match="environment_factory"):
        answer_reward([answered])


def test_tool_names_that_clash_with_trl_methods_are_refused():
    from toolgym.envs.types import FunctionSpec, ToolSpec
    from toolgym.trainers.trl_adapter import tool_method

    spec = ToolSpec(function=FunctionSpec(name="f", parameters={"type": "object", "properties": {"class": {"type": "string"}}}))
    with pytest.raises(ConfigError, match="'class' is not a Python identifier"):
        tool_method(spec, "f")


def chatty_env():
    env = toolgym.make(ENV)
    env.unwrapped.on_answer = lambda content: ([UserMessage(content="Please go on.")], None)
    return env


def fake_trainer(model, tokenizer, group):
    return SimpleNamespace(
        model=model, processing_class=tokenizer, num_generations=group, num_generations_eval=group, temperature=1.0,
        top_p=1.0, state=SimpleNamespace(global_step=0), accelerator=SimpleNamespace(unwrap_model=lambda m: m),
    )


def test_rollout_func_returns_each_episode_row_split_at_the_prompt():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from toolgym.policies.models import cached_tiny_model

    model_dir = cached_tiny_model("qwen3")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    tasks = [t.model_copy(update={"limits": t.limits.model_copy(update={"max_turns": 2})}) for t in sample_tasks(ENV, 2)]
    # seed=2: a run in which the random model never samples its end token before the 6-token cap,
    # so every turn is exactly 6 tokens (asserted below); re-pick it if seed_from ever changes.
    rollout = ToolgymRollout(chatty_env, tasks, rubric=rubric_for(ENV).verifiable(), max_new_tokens=6, seed=2)
    prompts = [row["prompt"] for row in rollout.dataset() for _ in range(3)]  # TRL repeats each prompt per generation
    out = rollout(prompts, fake_trainer(model, tokenizer, 3))
    rollout.close()
    assert len(out["prompt_ids"]) == len(out["completion_ids"]) == len(out[REWARD_COLUMN]) == 6
    # A task whose gold replay needs more turns than max_turns=2 allows cannot be scored: None, not 0.
    unscorable = sum(r is None for r in out[REWARD_COLUMN])
    assert rollout.stats == {"calls": 1, "episodes": 6, "forks": 0, "no_row": 0, "unscorable": unscorable}
    for prompt_ids, completion, logprobs, mask in zip(out["prompt_ids"], out["completion_ids"], out["logprobs"], out["env_mask"], strict=True):
        assert len(completion) == len(logprobs) == len(mask)
        assert mask.count(1) == 12 and 0 in mask  # two sampled turns of 6 tokens, the user's reply between them
        assert all(lp == 0.0 for lp, m in zip(logprobs, mask, strict=True) if m == 0)
        assert all(lp < 0.0 for lp, m in zip(logprobs, mask, strict=True) if m == 1)
        assert tokenizer.decode(prompt_ids).endswith("<|im_start|>assistant\n")
    assert all(isinstance(r, float) for r in out[REWARD_COLUMN] if r is not None)
    assert rubric_reward(prompts, [None] * 6, **{REWARD_COLUMN: out[REWARD_COLUMN]}) == out[REWARD_COLUMN]
    with pytest.raises(ConfigError, match="matches none"):
        rollout([[{"role": "user", "content": "unknown"}]], fake_trainer(model, tokenizer, 1))


def load_example():
    spec = importlib.util.spec_from_file_location("trl_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("trl_example", module)
    spec.loader.exec_module(module)
    return module


def test_trl_grpo_trainer_runs_on_toolgym_rows(tmp_path):
    example = load_example()
    trainer = example.build_trainer(environment=False, steps=1, out_dir=str(tmp_path), batch=4, group=2, completion_tokens=8)
    rollout = trainer.rollout_func
    seen = []
    trainer.rollout_func = lambda prompts, t: seen.append(rollout(prompts, t)) or seen[-1]
    trainer.train()
    rollout.close()
    (log,) = [e for e in trainer.state.log_history if "reward" in e]
    (out,) = seen
    # TRL counted exactly our prompt tokens and our sampled (env_mask 1) tokens, and took our rubric scores.
    assert log["num_tokens"] == sum(map(len, out["prompt_ids"])) + sum(sum(m) for m in out["env_mask"])
    assert log["rewards/rubric_reward/mean"] == pytest.approx(sum(out[REWARD_COLUMN]) / len(out[REWARD_COLUMN]))
    assert rollout.stats["episodes"] == 4
    assert log["toolgym/forks"] == 0.0 and log["toolgym/no_row"] == 0.0 and "toolgym/unscorable" in log


def test_trl_grpo_trainer_runs_with_the_environment_factory(tmp_path):
    example = load_example()
    trainer = example.build_trainer(environment=True, steps=1, out_dir=str(tmp_path), batch=2, group=2, completion_tokens=8)
    assert {t.__name__ for t in trainer.tools} == {"convert", "calculate", "store", "recall", "delete", "list_units"}
    trainer.train()
    (log,) = [e for e in trainer.state.log_history if "reward" in e]
    name = [k for k in log if k.startswith("rewards/") and k.endswith("TRLEnv/mean")]
    assert name and log[name[0]] >= 0.0

