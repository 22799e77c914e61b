"""The optimizer step every trainer shares: clip, skip what must not be applied, step, schedule.

GRPO, PPO and SFT all end a minibatch the same way (``OptimizerStep.step``):

1. measure and clip the gradient norm over the trained parameters;
2. skip the step, with a counted reason, when the norm is not finite (``nonfinite_grad``) or
   above ``skip_grad_norm`` (``exploding_grad``); a non-finite loss is skipped by the caller
   before ``backward`` (``nonfinite_loss``) and counted with ``skip``;
3. otherwise step every optimizer (policy, and PPO's value model) and count the step.

The learning-rate schedule (:func:`toolgym.trainers.schedule.lr_factor`, one function for RL and
SFT) scales every group's peak rate through :meth:`OptimizerStep.set_lr_factor`.

Example::

    step = OptimizerStep([optimizer], max_grad_norm=1.0, skip_grad_norm=1e4)
    step.zero_grad()
    loss.backward()
    reason = step.step()          # None when the weights moved
    print(step.metrics())         # optim/steps, optim/grad_norm, optim/skipped/<reason>
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch

from toolgym.trainers import metrics as m

_log = logging.getLogger(__name__)

SkipReason = Literal["nonfinite_loss", "nonfinite_grad", "exploding_grad"]
"""Why a step was skipped: counted as ``optim/skipped/<reason>``."""


class OptimizerStep:
    """One or more optimizers stepped together, with clipping, skip checks and counts.

    Args:
        optimizers: Torch optimizers stepped together (the policy's, PPO's value model's).
        params: Parameters whose gradient norm is measured and clipped, in this order (default:
            every optimizer's parameters, group by group).
        max_grad_norm: Gradients are clipped to this norm.
        skip_grad_norm: A pre-clip norm above this is an exploding gradient: the step is skipped.
    """

    def __init__(self, optimizers: Sequence[Any], *, params: Iterable[torch.nn.Parameter] | None = None,
                 max_grad_norm: float = 1.0, skip_grad_norm: float = 1e4):
        self.optimizers = list(optimizers)
        self.params = list(params) if params is not None else [
            p for o in self.optimizers for g in o.param_groups for p in g["params"]]
        self.max_grad_norm, self.skip_grad_norm = max_grad_norm, skip_grad_norm
        # The peak rate of every group, read once, so a schedule scales it instead of compounding.
        self.peak_lr = [[g["lr"] for g in o.param_groups] for o in self.optimizers]
        self.steps = 0
        self.skipped: Counter[str] = Counter()
        self.grad_norms: list[float] = []

    def zero_grad(self) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)

    def set_lr_factor(self, factor: float) -> None:
        """Set every group's learning rate to ``factor`` times its peak."""
        for o, peaks in zip(self.optimizers, self.peak_lr, strict=True):
            for group, peak in zip(o.param_groups, peaks, strict=True):
                group["lr"] = peak * factor

    @property
    def lr(self) -> float:
        """The first group's current learning rate."""
        return float(self.optimizers[0].param_groups[0]["lr"])

    def step(self) -> SkipReason | None:
        """Clip and step every optimizer, or skip (gradients zeroed, reason counted) and say why."""
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm))
        if not math.isfinite(norm):
            return self.skip("nonfinite_grad")
        if norm > self.skip_grad_norm:
            return self.skip("exploding_grad", f"grad norm {norm:.3g}")
        self.grad_norms.append(norm)
        for o in self.optimizers:
            o.step()
        self.steps += 1
        return None

    def skip(self, reason: SkipReason, detail: str = "") -> SkipReason:
        """Count a skipped step and drop its gradients; returns ``reason``."""
        _log.warning("skipped an optimizer step: %s %s", reason, detail)
        self.skipped[reason] += 1
        self.zero_grad()
        return reason

    def reset_counts(self) -> None:
        """Start counting a new iteration's steps."""
        self.steps, self.skipped, self.grad_norms = 0, Counter(), []

    def metrics(self) -> dict[str, float]:
        """``optim/steps``, the mean pre-clip ``optim/grad_norm`` and ``optim/skipped/<reason>``."""
        out = {m.STEPS: float(self.steps),
               m.GRAD_NORM: sum(self.grad_norms) / len(self.grad_norms) if self.grad_norms else math.nan}
        for reason, count in self.skipped.items():
            out[m.SKIPPED_PREFIX + reason] = float(count)
        return out


class UpdateStats:
    """Sums of one update's per-minibatch loss terms and diagnostics, with the step counts.

    ``metrics()`` gives each summed term's mean over the minibatches, the step metrics of
    ``step`` (steps taken, mean grad norm, skips by reason) and the last QK-Clip report.
    """

    def __init__(self, step: OptimizerStep):
        self.step = step
        self.sums: Counter[str] = Counter()
        self.minibatches = 0
        self.qk: dict[str, float] = {}

    def add(self, sums: dict[str, float]) -> None:
        """Record one minibatch's summed terms (each already its share of the minibatch's value)."""
        self.minibatches += 1
        self.sums.update(sums)

    def metrics(self) -> dict[str, float]:
        n = max(1, self.minibatches)
        return {**{key: value / n for key, value in self.sums.items()}, **self.step.metrics(), **self.qk}
