"""Training metric names, in one place, and the writers that record them.

Every iteration produces one flat ``{name: float}`` dict. ``MetricsWriter`` appends it to
``metrics.jsonl`` and, when tensorboard is installed and enabled, to TensorBoard event files.
``plot_run`` draws the reward curve and held-out success from the JSONL at the end of a run.

Names are stable: dashboards, tests and the benchmark refer to them. The diagnostics that
reveal silent failure (unscorable episodes, dropped groups, zero-variance groups, skipped
steps and their reasons, over-budget episodes) are first-class metrics.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

ITERATION = "iteration"
"""0-based index of the iteration the row describes."""
REWARD_MEAN = "train/reward_mean"
"""Mean reward of the scorable training episodes (after budget penalties)."""
REWARD_STD = "train/reward_std"
"""Population std of the same rewards."""
SCORE_MEAN = "train/score_mean"
"""Mean rubric total of the scorable episodes (before budget penalties)."""
EPISODES = "train/episodes"
"""Episodes rolled out this iteration (tasks x group size)."""
UNSCORABLE = "train/unscorable"
"""Episodes dropped because infrastructure failed or the rubric could not judge them (never scored 0)."""
GROUPS = "train/groups"
"""Task groups (siblings of one task) this iteration."""
GROUPS_DROPPED = "train/groups_dropped"
"""Groups left with fewer than two scorable siblings: dropped."""
ZERO_VARIANCE_GROUPS = "train/zero_variance_groups"
"""Groups whose rewards are all equal (no GRPO gradient); filtered when configured."""
ROWS = "train/rows"
"""Token rows trained on this iteration."""
TOKENS = "train/tokens"
"""Loss-masked (sampled) tokens trained on this iteration."""
OVER_BUDGET = "train/over_budget"
"""Episodes whose sampled tokens passed their token budget: truncated and penalized."""
TEMPERATURE = "train/temperature"
"""Sampling temperature of the iteration's rollouts."""
LOSS = "loss/total"
"""The back-propagated loss: policy + weighted KL, router, value terms (PTX is reported apart)."""
POLICY_LOSS = "loss/policy"
"""The policy objective alone (clipped surrogate, or the K2 squared loss)."""
AUX_LOSS = "moe/aux_loss"
"""Router load-balancing loss before its weight (1 when balanced; ``toolgym.trainers.moe``)."""
KL = "loss/kl"
"""k3 KL of the policy to the frozen initial policy (only when ``algorithm.kl_beta > 0``)."""
PTX_LOSS = "loss/ptx"
"""Supervised next-token loss of the PTX batch (only when ``ptx.weight > 0``)."""
VALUE_LOSS = "loss/value"
"""PPO's value loss, ``½ (V - R)²`` token mean, clipped around the rollout-time values when ``algorithm.value_clip`` is set."""
CLIP_FRAC = "loss/clip_frac"
"""Fraction of sampled tokens whose ratio π/π_behaviour left the clip range ``[1 - clip_low, 1 + clip_high]``
(0 when the policy still equals the behaviour policy, i.e. on the first minibatch of an iteration)."""
APPROX_KL = "policy/approx_kl"
"""Estimated KL(π_behaviour ‖ π) over sampled tokens, ``mean((ρ - 1) - log ρ)`` (k3, never negative): how far
the updates have moved the policy from the one that sampled the rows; 0 when they are equal."""
ENTROPY = "policy/entropy"
"""Mean entropy (nats) of the policy's next-token distribution at sampled tokens; ``log V`` when uniform,
0 when deterministic. A fast fall warns of collapse."""
LR = "optim/lr"
"""Learning rate of the iteration (``optim.lr`` times the schedule's factor)."""
GRAD_NORM = "optim/grad_norm"
"""Mean pre-clip gradient norm over the steps taken."""
STEPS = "optim/steps"
"""Optimizer steps taken this iteration."""
SKIPPED_PREFIX = "optim/skipped/"
"""``optim/skipped/<reason>``: steps skipped (nonfinite_loss, nonfinite_grad, exploding_grad; ``toolgym.trainers.step``)."""
QK_CLIPPED_HEADS = "optim/qk_clipped_heads"
"""Attention heads QK-Clip rescaled at the iteration's last step (MuonClip)."""
QK_MAX_LOGIT = "optim/qk_max_logit"
"""Largest pre-softmax attention logit QK-Clip saw at the iteration's last step (MuonClip)."""
EXPERT_PREFIX = "moe/"
"""``moe/layer<i>/<stat>``: per-layer expert load (cv, max_min, dead, entropy) from ``toolgym.trainers.moe``."""
HELDOUT_SUCCESS = "eval/heldout_success"
"""Fraction of held-out tasks whose rubric total reaches the success threshold (greedy)."""
HELDOUT_SCORE = "eval/heldout_score"
"""Mean rubric total of the scorable held-out episodes (greedy)."""
TIME_PREFIX = "time/"
"""``time/<phase>_s``: seconds spent in generation, env, scoring and update."""

IS_LOGPROB_GAP = "is/logprob_gap"
"""Mean |log π_prox - log π_behaviour| over sampled tokens: how far the learner's pre-update policy is from
the engine (and weights version) that sampled the tokens. Only with ``algorithm.importance`` set."""
IS_KL = "is/kl"
"""k3 estimate of KL(π_behaviour ‖ π_prox) per sampled token (>= 0)."""
IS_CORRECTED_FRAC = "is/corrected_frac"
"""Fraction of sampled tokens the importance correction truncated (ratio > C) or masked (outside [1/C, C])."""

SYSTEM_PREFIX = "system/"
"""RL-system metrics (``toolgym.trainers.system``): policy versions, staleness, weight sync, overlap."""
STALENESS_MEAN = "system/staleness_mean"
"""Mean over trained tokens of (update's version - version that sampled the token)."""
STALENESS_MAX = "system/staleness_max"
"""Largest staleness of a trained token (never above ``system.max_staleness``)."""
STALENESS_HIST_PREFIX = "system/staleness/"
"""``system/staleness/<k>``: fraction of trained tokens sampled k versions before the update."""
STALE_TOKENS_DROPPED = "system/stale_tokens_dropped"
"""Sampled tokens left out of the loss because they were older than ``system.max_staleness`` (partial rollouts)."""
POLICY_VERSION = "system/policy_version"
"""Weights version the update started from (= updates applied so far)."""
WEIGHT_SYNC_S = "system/weight_sync_s"
"""Seconds from the learner's new weights to every inference worker holding them."""
LEARNER_IDLE_FRAC = "system/learner_idle_frac"
"""Fraction of the iteration's wall time the learner was not updating (waiting for rollouts)."""
OVERLAP_S = "system/overlap_s"
"""Seconds of this iteration's update during which later iterations' rollouts were generating."""
TOKENS_PER_S = "system/tokens_per_s"
"""Sampled tokens of the iteration's episodes per second of the iteration's wall time."""
WORKER_RETRIES = "system/worker_retries"
"""Generation requests re-sent to another inference worker after theirs died (same seed, same tokens)."""
ENV_RETRIES = "system/env_retries"
"""Episodes restarted from their reset after their env (or env actor) died."""
PAUSED_EPISODES = "system/paused_episodes"
"""Partial rollouts: episodes paused at the iteration's turn budget (resuming under newer weights), or finished
but waiting for their group's siblings; with ``train/episodes`` they count every episode started and not yet trained."""
ROUTING_AGREEMENT = "routing/agreement"
"""Routing replay: mean over MoE layers of ``routing/layer{layer}/agreement`` (1.0 when replaying)."""
ROUTING_LAYER_AGREEMENT = "routing/layer{layer}/agreement"
"""Fraction of recorded top-k slots (sampled tokens x k) whose expert the training forward used in this layer."""
ROUTING_ROUTER_AGREEMENT = "routing/router_agreement"
"""Mean over MoE layers of ``routing/layer{layer}/router_agreement``: the mismatch replay removes."""
ROUTING_LAYER_ROUTER_AGREEMENT = "routing/layer{layer}/router_agreement"
"""Fraction of recorded top-k slots the training router itself picks in this layer (generation vs training)."""
ROUTING_GAP_REPLAY = "routing/logprob_gap_replay"
"""Mean |log pi_train - log pi_behaviour| over recorded sampled tokens, training forward replaying the routing."""
ROUTING_GAP_FREE = "routing/logprob_gap_free"
"""The same gap with the training router choosing its own experts (no replay)."""
ROUTING_RECORDED_FRAC = "routing/recorded_frac"
"""Fraction of sampled tokens that carry a routing record (the ones replayed and measured)."""
CRITIC_AGREEMENT = "critic/agreement/{criterion}"
"""Closed-loop critic: share of verified pairs (siblings whose outcomes differ) the critic orders right (ties half)."""
CRITIC_AUC = "critic/auc/{criterion}"
"""ROC AUC of the critic's values of the criterion against the verified outcome."""
CRITIC_PAIRS = "critic/pairs/{criterion}"
"""Verified pairs the critic valued both sides of (the agreement's denominator)."""
CRITIC_UNSCORABLE = "critic/unscorable/{criterion}"
"""Episodes with an outcome the critic could not judge on the criterion (counted, never 0)."""
CRITIC_VERIFIED_PAIRS = "critic/verified_pairs"
"""Verified pairs this iteration, whatever the critic did with them."""
CRITIC_TRAIN_AGREEMENT = "critic/train_agreement"
"""Critic training: share of parsed critic samples that agree with the verified preference (before the update)."""
CRITIC_TRAIN_SAMPLES = "critic/train_samples"
"""Critic samples generated this iteration (prompts x group size)."""
CRITIC_TRAIN_UNSCORABLE = "critic/train_unscorable"
"""Critic samples whose judgement did not parse: dropped from the batch, never rewarded 0."""
CRITIC_TRAIN_ROWS = "critic/train_rows"
"""Critic rows mixed into the RL batch (after dropping groups that cannot teach)."""
CRITIC_WEIGHT = "critic/weight/{criterion}"
"""critic.reweight: the criterion's rubric weight for the next iteration, fitted from the running calibration."""


class MetricsWriter:
    """Append metric rows to ``<out_dir>/metrics.jsonl`` (and TensorBoard when available).

    Args:
        out_dir: The run folder.
        tensorboard: Also write TensorBoard events under ``<out_dir>/tb``; skipped, with a
            note in ``self.notes``, when the tensorboard package is missing.
    """

    def __init__(self, out_dir: str | os.PathLike[str], *, tensorboard: bool = True):
        self.path = Path(out_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.notes: list[str] = []
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(out_dir) / "tb"))
            except ImportError:
                self.notes.append("tensorboard is not installed: metrics go to metrics.jsonl only (pip install tensorboard)")

    def write(self, row: dict[str, float]) -> None:
        """Append one row; non-finite values are written as null in JSON."""
        clean = {k: (v if math.isfinite(v) else None) for k, v in row.items()}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(clean, sort_keys=True) + "\n")
        if self._tb is not None:
            step = int(row.get(ITERATION, 0))
            for key, value in row.items():
                if key != ITERATION and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def truncate(self, iterations: int) -> None:
        """Keep only rows of iterations below ``iterations`` (a resumed run rewrites the rest)."""
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()
                and json.loads(line).get(ITERATION, 0) < iterations]
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """Rows of a ``metrics.jsonl`` file (null values become NaN)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append({k: (math.nan if v is None else v) for k, v in json.loads(line).items()})
    return rows


def plot_run(out_dir: str | os.PathLike[str]) -> Path | None:
    """Draw ``reward.png``: training reward per iteration, and held-out success where measured.

    Returns the PNG path, or None when there is nothing to plot.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    folder = Path(out_dir)
    if not (folder / "metrics.jsonl").is_file():
        return None
    rows = read_metrics(folder / "metrics.jsonl")
    train = [(r[ITERATION], r[REWARD_MEAN]) for r in rows if REWARD_MEAN in r]
    evals = [(r[ITERATION], r[HELDOUT_SUCCESS]) for r in rows if HELDOUT_SUCCESS in r]
    if not train and not evals:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    if train:
        axes[0].plot([x for x, _ in train], [y for _, y in train], marker="o")
    axes[0].set(title="training reward (mean over scorable episodes)", xlabel="iteration", ylabel="reward")
    if evals:
        axes[1].plot([x for x, _ in evals], [y for _, y in evals], marker="s", color="tab:green")
    axes[1].set(title="held-out success (greedy)", xlabel="iteration", ylabel="success rate", ylim=(0, 1))
    fig.tight_layout()
    out = folder / "reward.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
