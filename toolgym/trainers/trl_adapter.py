"""TRL interop: toolgym environments and episodes for TRL's ``GRPOTrainer``.

Two ways in, matching TRL 1.16's two extension points:

* ``environment_class(env)`` builds a class for ``GRPOTrainer(environment_factory=...)``. Its
  public methods are the env's tools, generated from the ``ToolSpec``s with type hints and
  Google docstrings (TRL turns them into tool schemas); ``reset(**row)`` starts the row's task
  and returns its opening request; ``get_reward()`` scores the episode with the env's rubric.
  TRL runs the tool loop and builds the token sequences itself. TRL never shows the
  environment the model's final answer, so ``get_reward`` scores answer criteria as missing;
  ``environment_class(env, answer_reward=True)`` with ``reward_funcs=answer_reward`` scores
  the answer too, reading it from the completion.
* ``ToolgymRollout`` is a ``rollout_func``: toolgym runs whole episodes (its parser, its
  errors, its users) with the trainer's current weights, and returns each episode's token row
  (``toolgym.rollouts.rows``) as ``prompt_ids`` / ``completion_ids`` / ``logprobs`` /
  ``env_mask``, with the rubric score in the ``toolgym_reward`` column for ``rubric_reward``.

Both build their rows from ``trl_dataset``. TRL prints an "experimental" warning for either
API; ``TRL_EXPERIMENTAL_SILENCE=1`` silences it. trl, torch and datasets are imported when
used, not when this module is.
"""

from __future__ import annotations

import inspect
import json
import keyword
from collections.abc import Callable, Sequence
from typing import Any

from toolgym.envs.canonical import seed_from
from toolgym.envs.env import ToolEnv
from toolgym.envs.types import AssistantMessage, Message, StopReason, Task, ToolCall, ToolSpec, UserMessage
from toolgym.errors import ConfigError
from toolgym.policies.chat import to_chat_dicts
from toolgym.policies.hf_policy import HFPolicy
from toolgym.policy import SamplingParams
from toolgym.rollouts.episode import Episode, TurnRecord
from toolgym.rollouts.loop import EnvSource, _factory, run_episodes
from toolgym.rollouts.rows import TOKEN_FORKS, episode_to_rows
from toolgym.rubrics import Rubric, rubric_for, score_episodes_sync

TASK_COLUMN = "toolgym_task"
"""Dataset column holding the task as JSON."""
SEED_COLUMN = "toolgym_seed"
"""Dataset column holding the reset seed."""
REWARD_COLUMN = "toolgym_reward"
"""Column ``ToolgymRollout`` fills with rubric scores (None when unscorable)."""
_JSON_TYPES: dict[str, Any] = {"number": float, "integer": int, "string": str, "boolean": bool, "array": list, "object": dict}
_RESERVED = {"reset", "get_reward"}


# --------------------------------------------------------------------------- environment_factory


def _python_type(schema: dict[str, Any]) -> tuple[Any, bool]:
    """The Python type of a JSON-schema property and whether it accepts null."""
    kinds = [schema] + [s for s in schema.get("anyOf", []) if isinstance(s, dict)]
    names: list[str] = [k["type"] for k in kinds if isinstance(k.get("type"), str)]
    nullable = "null" in names
    concrete = [n for n in names if n != "null"]
    return _JSON_TYPES.get(concrete[0], str) if concrete else str, nullable


def tool_method(spec: ToolSpec, method_name: str) -> Callable[..., str]:
    """A method that calls the tool ``spec`` on the wrapped env, typed and documented from the spec.

    Raises:
        ConfigError: An argument name is not a Python identifier (TRL calls tools by keyword).
    """
    params = spec.function.parameters.get("properties", {}) or {}
    required = set(spec.function.parameters.get("required", []) or [])
    signature = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {"return": str}
    doc_args = []
    for name, schema in sorted(params.items(), key=lambda item: item[0] not in required):  # required first
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ConfigError(f"tool {spec.name!r}: argument {name!r} is not a Python identifier, so TRL cannot pass it; rename it in the tool")
        kind, nullable = _python_type(schema if isinstance(schema, dict) else {})
        optional = name not in required
        annotations[name] = kind | None if (optional or nullable) else kind
        default = inspect.Parameter.empty if not optional else None
        signature.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotations[name]))
        text = " ".join(str(schema.get("description") or f"The {name}.").split()) if isinstance(schema, dict) else f"The {name}."
        if isinstance(schema, dict) and schema.get("enum"):
            text += f" (choices: {json.dumps(schema['enum'])})"
        doc_args.append(f"    {name}: {text}")
    description = " ".join(spec.function.description.split()) or f"Call the {spec.name} tool."
    doc = description + ("\n\nArgs:\n" + "\n".join(doc_args) if doc_args else "") + "\n\nReturns:\n    The tool's output, or an error explanation."
    tool_name = spec.name

    def method(self: TRLEnvironment, *args: Any, **kwargs: Any) -> str:
        bound = inspect.Signature(signature[1:]).bind(*args, **kwargs)
        arguments = {k: v for k, v in bound.arguments.items() if v is not None}
        return self._call(tool_name, arguments)

    method.__name__ = method.__qualname__ = method_name
    method.__doc__ = doc
    method.__annotations__ = annotations
    method.__signature__ = inspect.Signature(signature, return_annotation=str)  # type: ignore[attr-defined]  # functions accept __signature__ (inspect reads it)
    return method


class TRLEnvironment:
    """Base of the classes ``environment_class`` builds: one toolgym env behind TRL's protocol."""

    _factory: Callable[[], ToolEnv]
    _env_id: str
    _rubric: Rubric

    def __init__(self) -> None:
        self._env = self._factory()
        self._task: Task | None = None
        self._seed = 0
        self._turns: list[TurnRecord] = []
        self._tools: list[ToolSpec] = []
        self._messages: list[Message] = []
        self._stop: StopReason | None = None
        self._calls = 0
        self._replay: ToolEnv | None = None

    def reset(self, **row: Any) -> str | None:
        """Start the row's task (``toolgym_task``, ``toolgym_seed``); return its opening request."""
        task = Task.model_validate_json(row[TASK_COLUMN]) if row.get(TASK_COLUMN) else None
        self._seed = int(row.get(SEED_COLUMN) or 0)
        obs, info = self._env.reset(seed=self._seed, options={"task": task} if task is not None else None)
        self._task = info["task"]
        self._turns, self._tools, self._calls = [], list(obs.tools), 0
        self._messages, self._stop = list(obs.messages), None  # the transcript is ours, built from reset/step
        users = [m for m in obs.messages if isinstance(m, UserMessage)]
        return users[-1].content if users else None

    def _score(self, final_answer: str = "") -> float | None:
        """The rubric's total for the episode so far; None when it cannot be scored (never a silent 0)."""
        if self._task is None:
            return None
        if self._replay is None:  # checks that replay the gold actions need an env of the same kind
            self._replay = self._factory()
        (score,) = score_episodes_sync([self._episode(final_answer)], self._rubric, env=self._replay)
        return score.total

    def _episode(self, final_answer: str = "") -> Episode:
        """The calls made since ``reset`` as a toolgym ``Episode`` (one turn per call)."""
        if self._task is None:
            raise ConfigError("the TRL environment was scored before reset(); TRL calls reset(**row) first")
        return Episode(
            id=f"{self._task.id}/trl", env_id=self._env_id, task=self._task, seed=self._seed,
            tools=list(self._tools), messages=list(self._messages), turns=list(self._turns),
            stop_reason=self._stop or StopReason.ANSWERED,
            final_answer=final_answer, final_state_digest=self._env.state_digest(),
        )

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        if self._task is None or self._stop is not None:
            return f"Error: the episode is over ({getattr(self._stop, 'value', 'not started')}); no more tool calls are run."
        self._calls += 1
        call = ToolCall(id=f"trl_{self._calls}", name=name, arguments=arguments)
        start = len(self._messages) + 1
        obs, reward, _, _, info = self._env.step(AssistantMessage(content="", tool_calls=[call]))
        self._messages += [info["assistant"], *obs.messages]
        self._stop = info["stop_reason"]
        self._turns.append(TurnRecord(text="", tool_calls=info["tool_calls"], errors=info["errors"], observation_start=start, reward=reward))
        return "\n".join(m.content for m in obs.messages if hasattr(m, "content"))


def _get_reward(self: TRLEnvironment) -> float | None:
    """The rubric's total for the episode (its final answer unseen); None when it cannot be scored."""
    return self._score()


def answer_reward(completions: Sequence[Any], environments: Sequence[TRLEnvironment] | None = None, **kwargs: Any) -> list[float | None]:
    """TRL reward function for classes built with ``environment_class(env, answer_reward=True)``.

    Scores each environment's episode with the model's final answer: the content of the
    completion's last assistant message, when that message calls no tool.
    """
    if environments is None:
        raise ConfigError("answer_reward reads TRL's environments; pass environment_factory=environment_class(env, answer_reward=True)")
    return [env._score(_final_answer(c)) for env, c in zip(environments, completions, strict=True)]


def _final_answer(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    last = next((m for m in reversed(completion or []) if isinstance(m, dict) and m.get("role") == "assistant"), None)
    if last is None or last.get("tool_calls"):
        return ""
    return str(last.get("content") or "")


def environment_class(
    env: EnvSource, *, rubric: Rubric | None = None, probe_seed: int = 0, answer_reward: bool = False
) -> type[TRLEnvironment]:
    """A class for ``GRPOTrainer(environment_factory=cls)`` whose public methods are ``env``'s tools.

    Args:
        env: A registered env id or a callable returning a fresh ``ToolEnv``.
        rubric: Scores episodes (default: the catalog rubric, verifiable part).
        probe_seed: Reset seed of the env instance whose tools become the methods.
        answer_reward: Leave ``get_reward`` out (TRL never shows an environment the final
            answer, so answer criteria score as missing there) and score with the
            ``answer_reward`` reward function instead, which reads the answer from the completion.

    Raises:
        ConfigError: A tool name clashes with ``reset``/``get_reward`` after mapping to an identifier.
    """
    env_id, factory = _factory(env)
    probe = factory()
    obs, _ = probe.reset(seed=probe_seed)
    probe.close()
    namespace: dict[str, Any] = {"_factory": staticmethod(factory), "_env_id": env_id, "_rubric": rubric or rubric_for(env_id).verifiable()}
    if not answer_reward:
        namespace["get_reward"] = _get_reward
    for spec in obs.tools:
        method_name = "".join(c if c.isalnum() or c == "_" else "_" for c in spec.name)
        if method_name in _RESERVED or method_name in namespace or method_name.startswith("_"):
            raise ConfigError(f"tool {spec.name!r} maps to the method name {method_name!r}, which TRL reserves or another tool uses; rename the tool")
        namespace[method_name] = tool_method(spec, method_name)
    name = "".join(p.capitalize() for p in env_id.replace("/", "_").replace("-", "_").split("_") if p) + "TRLEnv"
    return type(name, (TRLEnvironment,), namespace)


# --------------------------------------------------------------------------- dataset


def trl_dataset(env: EnvSource, tasks: Sequence[Task], *, seed: int = 0, for_environment: bool = False) -> Any:
    """A ``datasets.Dataset`` of conversational prompts, one row per task.

    Args:
        env: The env the tasks belong to (renders the opening messages).
        tasks: The tasks; row ``i`` resets with seed ``seed + i``.
        seed: First reset seed.
        for_environment: For ``environment_factory``: the user message is left empty, since
            ``reset`` returns the request and TRL appends it there.
    """
    from datasets import Dataset

    _, factory = _factory(env)
    instance = factory()
    rows = []
    for i, task in enumerate(tasks):
        obs, _ = instance.reset(seed=seed + i, options={"task": task})
        prompt = to_chat_dicts(obs.messages)
        if for_environment and prompt and prompt[-1]["role"] == "user":
            prompt[-1] = {"role": "user", "content": ""}
        rows.append({"prompt": prompt, TASK_COLUMN: task.model_dump_json(), SEED_COLUMN: seed + i})
    instance.close()
    return Dataset.from_list(rows)


# --------------------------------------------------------------------------- rollout_func


def rubric_reward(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """TRL reward function: the rubric scores ``ToolgymRollout`` put in the ``toolgym_reward`` column.

    None marks an unscorable episode (an infrastructure failure); TRL leaves it out of the mean.
    """
    if REWARD_COLUMN not in kwargs:
        raise ConfigError(f"rubric_reward needs the {REWARD_COLUMN!r} column; pass rollout_func=ToolgymRollout(...) to GRPOTrainer")
    return list(kwargs[REWARD_COLUMN])


class ToolgymRollout:
    """A TRL ``rollout_func`` that plays toolgym episodes with the trainer's current weights.

    Each distinct prompt (TRL repeats each one ``num_generations`` times in a row) becomes a
    group of sibling episodes of its task. An episode's first token row gives the completion:
    the sampled ids (``env_mask`` 1, behaviour log-probs) and the environment's ids between
    turns (``env_mask`` 0). Turns after a fork (``toolgym.rollouts.rows``) are left out and
    counted in ``stats["forks"]``; an episode with no row (its first turn failed) gets a single
    masked token and the reward None. Per call, the rates of forks, row-less and unscorable
    episodes are logged with TRL's metrics as ``toolgym/forks``, ``toolgym/no_row`` and
    ``toolgym/unscorable``.

    Args:
        env: A registered env id or a callable returning a fresh ``ToolEnv``.
        tasks: The tasks ``dataset()`` offers; prompts are matched back to them.
        rubric: Scores episodes (default: the catalog rubric, verifiable part).
        max_new_tokens: Token budget of one assistant turn.
        seed: Base seed of resets and sampling (each call draws fresh policy seeds).

    Example:
        ``rollout = ToolgymRollout("toolgym/unitconv-v0", tasks)`` then
        ``GRPOTrainer(model, reward_funcs=rubric_reward, train_dataset=rollout.dataset(), rollout_func=rollout, ...)``.
    """

    def __init__(self, env: EnvSource, tasks: Sequence[Task], *, rubric: Rubric | None = None, max_new_tokens: int = 64, seed: int = 0):
        if not tasks:
            raise ConfigError("ToolgymRollout needs at least one task")
        self.env = env
        self.env_id, self._factory = _factory(env)
        self.tasks = list(tasks)
        self.rubric = rubric or rubric_for(self.env_id).verifiable()
        self.max_new_tokens, self.seed = max_new_tokens, seed
        self.stats: dict[str, int] = {"calls": 0, "episodes": 0, "forks": 0, "no_row": 0, "unscorable": 0}
        self._by_request = {task.instruction: task for task in self.tasks}
        self._policy: Any = None

    def dataset(self) -> Any:
        """The ``datasets.Dataset`` of these tasks' opening conversations."""
        return trl_dataset(self.env, self.tasks, seed=self.seed)

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        """Play one episode per prompt; see the class docstring for what comes back."""
        group = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        unique = prompts[::group] if len(prompts) % group == 0 and all(prompts[i] == prompts[i - i % group] for i in range(len(prompts))) else None
        tasks = [self._task_of(p) for p in (unique if unique is not None else prompts)]
        policy = self._policy_for(trainer)
        sampling = SamplingParams(max_new_tokens=self.max_new_tokens, temperature=trainer.temperature, top_p=trainer.top_p)
        self.stats["calls"] += 1
        model = policy.model
        was_training = model.training
        model.eval()  # behaviour log-probs without dropout
        try:
            episodes = run_episodes(
                self.env, policy, tasks=tasks, group_size=group if unique is not None else 1, sampling=sampling,
                # >> 33: a 31-bit run seed, so reset seeds (run seed + task index) stay small ints
                seed=seed_from(self.seed, trainer.state.global_step, self.stats["calls"]) >> 33,
            )
        finally:
            model.train(was_training)
        replay = self._factory()  # checks that replay the gold actions need an env of the same kind
        try:
            scores = score_episodes_sync(episodes, self.rubric, env=replay)
        finally:
            replay.close()
        out: dict[str, list[Any]] = {"prompt_ids": [], "completion_ids": [], "logprobs": [], "env_mask": [], REWARD_COLUMN: []}
        before = dict(self.stats)
        for episode, score in zip(episodes, scores, strict=True):
            self._add(out, episode, score.total, policy)
        self._log(trainer, {k: (self.stats[k] - before[k]) / len(episodes) for k in ("forks", "no_row", "unscorable")})
        return out

    @staticmethod
    def _log(trainer: Any, values: dict[str, float]) -> None:
        """Per-episode rates next to TRL's own metrics (``toolgym/forks``...), when the trainer keeps them."""
        metrics = getattr(trainer, "_metrics", None)  # TRL's per-mode metric lists, averaged at each log step
        if not isinstance(metrics, dict):
            return
        mode = "train" if trainer.model.training else "eval"
        for key, value in values.items():
            metrics[mode][f"toolgym/{key}"].append(float(value))

    def close(self) -> None:
        """Stop the policy's worker thread."""
        if self._policy is not None:
            self._policy.close()
            self._policy = None

    def _add(self, out: dict[str, list[Any]], episode: Episode, reward: float | None, policy: Any) -> None:
        self.stats["episodes"] += 1
        self.stats["forks"] += int(episode.metrics.get(TOKEN_FORKS, 0))
        self.stats["unscorable"] += reward is None
        rows = episode_to_rows(episode)
        if not rows:  # nothing sampled to train on: one masked end token, no reward
            self.stats["no_row"] += 1
            out["prompt_ids"].append(policy.renderer.token_ids(episode.messages[:2] or [UserMessage(content="")], episode.tools))
            out["completion_ids"].append([min(policy.end_ids)])
            out["logprobs"].append([0.0])
            out["env_mask"].append([0])
            out[REWARD_COLUMN].append(None)
            return
        row = rows[0]
        n = row.prompt_len
        out["prompt_ids"].append(row.input_ids[:n])
        out["completion_ids"].append(row.input_ids[n:])
        out["logprobs"].append(row.behaviour_logprobs[n:])
        out["env_mask"].append(row.loss_mask[n:])
        out[REWARD_COLUMN].append(reward)

    def _task_of(self, prompt: Any) -> Task:
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"] if isinstance(prompt, list) else []
        request = users[0].get("content") if users else None
        if request not in self._by_request:
            raise ConfigError(f"prompt {str(request)[:80]!r} matches none of this rollout's tasks; build the dataset with ToolgymRollout.dataset()")
        return self._by_request[request]

    def _policy_for(self, trainer: Any) -> Any:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if self._policy is None or self._policy.model is not model:
            self.close()
            self._policy = HFPolicy(model, trainer.processing_class)
        return self._policy
