"""RL math as pure tensor functions: advantages, log-probs, losses, KL, GAE.

Each function takes and returns tensors with the shapes in its docstring; nothing here holds
state or imports transformers. ``docs/training_math.md`` lists the formulas and switches.
"""

from toolgym.trainers.rl.advantages import group_advantages, zero_variance_groups
from toolgym.trainers.rl.gae import gae, masked_whiten, terminal_rewards
from toolgym.trainers.rl.importance import Correction, behaviour_kl, corrected_tokens, importance_weights, logprob_gap
from toolgym.trainers.rl.logprobs import token_entropy, token_logprobs
from toolgym.trainers.rl.losses import (
    Aggregation,
    aggregate,
    approx_kl,
    clip_fraction,
    clipped_surrogate,
    group_mean,
    k2_squared_loss,
    kl_k3,
    value_loss,
)

__all__ = [
    "Aggregation",
    "Correction",
    "behaviour_kl",
    "corrected_tokens",
    "importance_weights",
    "logprob_gap",
    "aggregate",
    "approx_kl",
    "clip_fraction",
    "clipped_surrogate",
    "gae",
    "group_advantages",
    "group_mean",
    "k2_squared_loss",
    "kl_k3",
    "masked_whiten",
    "terminal_rewards",
    "token_entropy",
    "token_logprobs",
    "value_loss",
    "zero_variance_groups",
]
