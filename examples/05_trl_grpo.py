"""TRL's GRPOTrainer on a toolgym environment, on CPU, with a tiny MoE model built offline.

Two ways to plug toolgym into TRL 1.16 (see ``toolgym.trainers.trl_adapter``):

* default, ``rollout_func``: toolgym plays whole episodes with the trainer's current weights
  and hands TRL token-faithful rows (sampled ids with their log-probs, environment ids masked);
  the rubric score is the reward;
* ``--environment``, ``environment_factory``: TRL runs its own tool loop against a class whose
  methods are the env's tools, and ``get_reward`` is the env's rubric.

The tiny model is untrained, so rewards stay near 0: this shows the plumbing, not learning
(``make demo`` shows learning). Run: ``python examples/05_trl_grpo.py [--environment] [--steps 2]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # both TRL APIs print an "experimental" warning

ENV = "toolgym/unitconv-v0"


def build_trainer(
    *, environment: bool, steps: int, out_dir: str, batch: int = 8, group: int = 4, completion_tokens: int = 48,
    extra_rewards: list[Any] | None = None,
) -> Any:
    """A GRPOTrainer over unitconv tasks (``batch // group`` per step, ``group`` samples each) on the tiny Qwen3-MoE."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from toolgym.policies.models import cached_tiny_model
    from toolgym.rollouts import sample_tasks
    from toolgym.trainers.trl_adapter import ToolgymRollout, environment_class, rubric_reward, trl_dataset

    model_dir = cached_tiny_model("qwen3")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tasks = sample_tasks(ENV, 4, seed=0)
    config = GRPOConfig(
        output_dir=out_dir, max_steps=steps, per_device_train_batch_size=batch, num_generations=group, learning_rate=1e-4,
        max_completion_length=completion_tokens, temperature=1.0, beta=0.0, logging_steps=1, save_strategy="no", report_to="none",
        use_cpu=True, seed=0, max_tool_calling_iterations=2, dataloader_num_workers=0,
    )
    if environment:
        from trl.chat_template_utils import qwen3_template

        tokenizer.response_template = qwen3_template  # toolgym's Hermes template writes calls as Qwen3 does
        return GRPOTrainer(
            model=model, processing_class=tokenizer, args=config, reward_funcs=extra_rewards,
            train_dataset=trl_dataset(ENV, tasks, for_environment=True), environment_factory=environment_class(ENV),
        )
    rollout = ToolgymRollout(ENV, tasks, max_new_tokens=min(16, completion_tokens))
    return GRPOTrainer(
        model=model, processing_class=tokenizer, args=config, reward_funcs=[rubric_reward, *(extra_rewards or [])],
        train_dataset=rollout.dataset(), rollout_func=rollout,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environment", action="store_true", help="use environment_factory instead of rollout_func")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = build_trainer(environment=args.environment, steps=args.steps, out_dir=out_dir)
        trainer.train()
    mode = "environment_factory" if args.environment else "rollout_func"
    print(f"TRL GRPOTrainer on {ENV} via {mode}, {args.steps} steps")
    print(f"{'step':>4} {'reward':>8} {'reward_std':>10} {'loss':>8} {'tokens/completion':>18}")
    for entry in trainer.state.log_history:
        if "reward" in entry:
            print(f"{entry['step']:>4} {entry['reward']:>8.3f} {entry['reward_std']:>10.3f} {entry['loss']:>8.4f} "
                  f"{entry['completions/mean_length']:>18.1f}")
    rollout = getattr(trainer, "rollout_func", None)
    if rollout is not None:
        print(f"toolgym rollouts: {rollout.stats}")
        rollout.close()


if __name__ == "__main__":
    main()
