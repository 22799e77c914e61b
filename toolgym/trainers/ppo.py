"""PPO over multi-turn toolgym episodes: a value function, per-token GAE, reward at the end.

The loop is GRPO's (tasks -> rollouts -> rubric scores -> updates); only the advantages
differ. Each row's reward sits on its last sampled token; GAE runs over the sampled tokens of
the row (environment tokens are context, not steps). A row whose episode **terminated**
(answered, user stop) ends with value 0; a **truncated** one (max turns, token budget,
context limit, or a row cut at a fork) bootstraps from the value of its last state.

``algorithm.value_model`` picks a value head on the policy (``"head"``) or a separate critic
copy (``"critic"``); either has its own AdamW optimizer and is saved in checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch

from toolgym.trainers import metrics as m
from toolgym.trainers import rl
from toolgym.trainers.experience import Collected
from toolgym.trainers.grpo import GRPOTrainer
from toolgym.trainers.update import Batch, make_batch
from toolgym.trainers.value import ValueModel


class PPOTrainer(GRPOTrainer):
    """PPO with GAE; same arguments as ``GRPOTrainer`` (``algorithm.name`` must be ``"ppo"``)."""

    def __init__(self, config: Any, model: Any, tokenizer: Any, **kwargs: Any):
        super().__init__(config, model, tokenizer, **kwargs)
        kind = config.algorithm.value_model
        self.value = ValueModel(kind, model)
        self.value_optimizer = torch.optim.AdamW(
            [p for n, p in self.value.named_parameters()], lr=config.optim.lr, weight_decay=0.0
        )

    def build_batch(self, collected: Collected) -> tuple[Batch | None, dict[str, float]]:
        """Rows of every scorable episode with per-token GAE advantages and returns."""
        a = self.config.algorithm
        rows, rewards = [], []
        for group in collected.groups:
            for scored in group:
                for row in scored.rows:
                    rows.append(row)
                    rewards.append(scored.reward)
        counts = {m.GROUPS: float(len(collected.groups)), m.ROWS: float(len(rows)),
                  m.TOKENS: float(sum(sum(r.loss_mask) for r in rows))}
        if not rows:
            return None, counts
        batch = make_batch(rows, self.pad_id, advantages=[0.0] * len(rows), rewards=rewards)
        self.model.eval()
        full = self.value.predict(self.model, batch.input_ids, batch.attention_mask)  # (B, T)
        values = full[:, :-1]  # (B, T-1): the state in which each token 1 .. T-1 was sampled
        mask = batch.loss_mask[:, 1:]  # (B, T-1)
        # A row's reward only counts on the row that ends its episode; earlier fork rows bootstrap.
        ends = torch.tensor([r.ends_episode for r in rows])
        reward = torch.where(ends, batch.rewards, torch.zeros_like(batch.rewards))  # (B,)
        terminated = torch.tensor([r.terminated for r in rows])  # (B,)
        bootstrap = _last_values(full, batch.attention_mask)  # (B,) the state after the row
        adv, returns = rl.gae(rl.terminal_rewards(reward, mask), values, mask, bootstrap=bootstrap,
                              terminated=terminated, gamma=a.gamma, lam=a.lam)  # (B, T-1) each
        adv = rl.masked_whiten(adv, mask)
        pad = torch.zeros(len(rows), 1)
        batch.advantages = torch.cat([pad, adv], dim=1)  # (B, T), aligned with input_ids
        batch.returns = torch.cat([pad, returns], dim=1)  # (B, T)
        batch.old_values = torch.cat([pad, values], dim=1)  # (B, T)
        return batch, counts

    def update(self, batch: Batch, **_: Any) -> dict[str, float]:
        def value_fn(outputs: Any, micro: Batch) -> torch.Tensor:
            return self.value.values(outputs, micro.input_ids, micro.attention_mask)  # (B, T-1)

        return super().update(batch, value_fn=value_fn, extra_optimizers=[self.value_optimizer])

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "value": self.value.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.value.load_state_dict(state["value"])

    def optimizers(self) -> dict[str, Any]:
        return {**super().optimizers(), "value": self.value_optimizer}


def _last_values(values: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Value at each row's last real position: the state after the row, for bootstrapping."""
    last = attention.sum(dim=1).clamp(min=1) - 1  # (B,)
    return values[torch.arange(values.shape[0]), last]  # (B,)
