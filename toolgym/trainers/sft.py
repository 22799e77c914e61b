"""Supervised fine-tuning (and pretraining) of a causal LM on toolgym conversations.

A conversation becomes one token row: the chat template's text cut at turn boundaries, each
piece tokenized on its own, with loss mask 1 on what the assistant wrote (its text and the
``<|im_end|>`` that closes its turn) and 0 on everything the environment wrote (system
prompt, tool declarations, user turns, tool results, the assistant-turn opener). That is the
same split an RL row has: sampled tokens trained on, observation tokens only read.

``train_rows`` is a plain loop: shuffled batches, right padding, the router load-balancing loss
for MoE models when the config defines one, and RL's optimizer and step (AdamW from
``toolgym.trainers.optim``, clipping and skip checks from ``toolgym.trainers.step``, the
warmup-then-decay rate from ``toolgym.trainers.schedule``). ``ptx_backward`` is the same loss
mixed into RL steps (K2's PTX loss).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch

from toolgym.envs.types import Message, ToolSpec
from toolgym.errors import ConfigError
from toolgym.policies.chat import to_chat_dicts, tool_dicts
from toolgym.trainers.batch import Batch
from toolgym.trainers.moe import load_balancing_loss, router_spec
from toolgym.trainers.optim import build_optimizer
from toolgym.trainers.schedule import lr_factor
from toolgym.trainers.step import OptimizerStep


@dataclass
class SFTRow:
    """One training sequence: token ids and a loss mask of the same length."""

    ids: list[int]
    mask: list[int]
    """1 where the token is trained on (assistant output), 0 where it is only context."""

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.mask):
            raise ValueError(f"ids ({len(self.ids)}) and mask ({len(self.mask)}) differ in length")


def conversation_row(tokenizer: Any, messages: Sequence[Message], tools: Sequence[ToolSpec] = (), *, all_tokens: bool = False) -> SFTRow:
    """The token row of a finished conversation (see the module docstring).

    Args:
        tokenizer: A tokenizer whose chat template puts nothing between turns that depends on
            what follows (true of both shipped templates).
        messages: The conversation; assistant turns are rendered from their ``raw`` text.
        tools: The tools the conversation offered.
        all_tokens: Mask 1 on every token (plain language-model pretraining).
    """
    chat, specs = to_chat_dicts(messages), tool_dicts(tools) or None
    ids: list[int] = []
    mask: list[int] = []
    done = ""  # text already turned into ids

    def add(text: str, trained: bool) -> None:
        piece = tokenizer.encode(text, add_special_tokens=False) if text else []
        ids.extend(piece)
        mask.extend([1 if (trained or all_tokens) else 0] * len(piece))

    for k, message in enumerate(chat):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(chat[:k], tools=specs, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(chat[: k + 1], tools=specs, tokenize=False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            raise ConfigError("the chat template renders earlier turns differently once later turns exist; it cannot make SFT rows")
        add(prompt[len(done) :], False)
        add(full[len(prompt) :], True)
        done = full
    rest = tokenizer.apply_chat_template(chat, tools=specs, tokenize=False)
    add(rest[len(done) :], False)
    return SFTRow(ids, mask)


Schedule = Literal["cosine", "constant"]
"""SFT's schedules after warmup (``toolgym.trainers.schedule.lr_factor``; decay ends at 10% of ``lr``)."""
_SCHEDULES = frozenset(get_args(Schedule))


@dataclass
class SFTConfig:
    """Settings of ``train_rows``."""

    lr: float = 3e-3
    """Peak learning rate."""
    batch_size: int = 16
    """Rows per step."""
    epochs: float = 1.0
    """Passes over the rows (fractions allowed); ``time_budget_s`` may stop earlier."""
    time_budget_s: float | None = None
    """Stop after this many seconds (None: no limit); the schedule then counts time as progress."""
    warmup_steps: int = 20
    """Steps of linear warmup."""
    schedule: Schedule = "cosine"
    """After warmup: "cosine" decays to 10% of ``lr`` by the end; "constant" holds ``lr``."""
    weight_decay: float = 0.01
    """AdamW weight decay, on every parameter (norms and biases included)."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this norm."""
    skip_grad_norm: float = 1e4
    """A pre-clip gradient norm above this skips the step (counted in ``SFTResult.skipped``)."""
    max_len: int = 512
    """Rows are cut to this many tokens."""
    aux_loss_weight: float = 0.0
    """Weight of the MoE router load-balancing loss (0: off)."""
    seed: int = 0
    """Seeds the batch order."""
    log_every: int = 50
    """Steps per point of the loss curve (and per ``log`` call)."""


@dataclass
class SFTResult:
    """What a run did: steps, tokens, time and the loss curve (mean loss per logged window)."""

    steps: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    """Steps skipped, by reason (``nonfinite_loss``, ``nonfinite_grad``, ``exploding_grad``)."""

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else math.nan


def _batch(rows: Sequence[SFTRow], pad_id: int, max_len: int) -> tuple[Any, Any, Any]:
    """Right-padded (B, T) ids, attention mask and labels (-100 where not trained)."""
    width = min(max_len, max(len(r.ids) for r in rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    attention = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)  # (B, T)
    for b, row in enumerate(rows):
        n = min(width, len(row.ids))
        ids[b, :n] = torch.tensor(row.ids[:n])
        attention[b, :n] = 1
        trained = torch.tensor(row.mask[:n], dtype=torch.bool)
        labels[b, :n] = torch.where(trained, ids[b, :n], torch.full_like(ids[b, :n], -100))
    return ids, attention, labels


def masked_lm_loss(model: Any, ids: Any, attention: Any, labels: Any, aux_loss_weight: float = 0.0) -> tuple[Any, int]:
    """Mean next-token cross-entropy over labelled positions, plus the weighted router loss.

    The router loss is RL's: ``toolgym.trainers.moe.load_balancing_loss``, the sequence-wise
    balance loss over attended tokens, on both model kinds (transformers' ``out.aux_loss`` is
    ``None`` for DeepSeek-V3 and top_k times larger for Qwen3-MoE, so one weight would not mean
    the same thing in SFT and RL).

    Returns:
        (loss, number of labelled tokens).
    """
    want_aux = aux_loss_weight > 0 and hasattr(model.config, "output_router_logits")
    out = model(input_ids=ids, attention_mask=attention, output_router_logits=True) if want_aux else model(input_ids=ids, attention_mask=attention)
    logits = out.logits[:, :-1, :].float()  # (B, T-1, V): position t predicts token t+1
    target = labels[:, 1:]  # (B, T-1)
    count = int((target != -100).sum())
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
    if want_aux:
        loss = loss + aux_loss_weight * load_balancing_loss(out.router_logits, router_spec(model), mask=attention)
    return loss, count


def train_rows(model: Any, rows: Sequence[SFTRow], config: SFTConfig, *, pad_id: int,
               log: Callable[[int, float], None] | None = None) -> SFTResult:
    """Train ``model`` in place on ``rows``; return the loss curve and counts.

    Args:
        model: A transformers causal LM (switched to train mode, then back to eval).
        rows: Token rows (``conversation_row``).
        config: Learning rate, batch size, epochs, time budget...
        pad_id: Padding token id.
        log: Called as ``log(step, loss)`` every ``config.log_every`` steps (None: silent).
    """
    if not rows:
        raise ConfigError("train_rows got no rows; generate some conversations first")
    if config.batch_size < 1 or config.lr <= 0:
        raise ConfigError(f"batch_size must be >= 1 and lr > 0, got {config.batch_size} and {config.lr}")
    if config.schedule not in _SCHEDULES:
        raise ConfigError(f"schedule must be one of {sorted(_SCHEDULES)}, got {config.schedule!r}")
    rng = random.Random(config.seed)
    total_steps = max(1, math.ceil(len(rows) * config.epochs / config.batch_size))
    optimizer = build_optimizer(model, "adamw", lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98),
                                decay_vectors=True)
    step = OptimizerStep([optimizer], params=[p for p in model.parameters() if p.requires_grad],
                         max_grad_norm=config.max_grad_norm, skip_grad_norm=config.skip_grad_norm)
    result, window, start = SFTResult(), [], time.perf_counter()
    order: list[int] = []
    model.train()
    try:
        for k in range(total_steps):
            elapsed = time.perf_counter() - start
            if config.time_budget_s is not None and elapsed > config.time_budget_s:
                break
            # Progress is the larger of steps and time used, so a time-capped run still decays its rate.
            progress = max(k / total_steps, elapsed / config.time_budget_s if config.time_budget_s else 0.0)
            step.set_lr_factor(lr_factor(k, config.warmup_steps, progress, config.schedule))
            picked, order = _draw(order, rng, len(rows), config.batch_size)
            ids, attention, labels = _batch([rows[i] for i in picked], pad_id, config.max_len)
            step.zero_grad()
            loss, count = masked_lm_loss(model, ids, attention, labels, config.aux_loss_weight)
            if not torch.isfinite(loss):
                step.skip("nonfinite_loss")  # a nan in the curve, no step
                window.append(math.nan)
                continue
            loss.backward()
            if step.step() is None:
                result.steps += 1
                result.tokens += int(attention.sum())
                result.trained_tokens += count
            window.append(float(loss.detach()))
            if len(window) >= config.log_every:
                result.losses.append(sum(window) / len(window))
                window = []
                if log is not None:
                    log(k + 1, result.losses[-1])
        if window:
            result.losses.append(sum(window) / len(window))
    finally:
        model.eval()
    result.skipped = dict(step.skipped)
    result.seconds = time.perf_counter() - start
    return result


def _draw(order: list[int], rng: random.Random, rows: int, size: int) -> tuple[list[int], list[int]]:
    """The next ``size`` row indices of a stream of shuffled epochs, and what is left of the stream."""
    while len(order) < size:
        fresh = list(range(rows))
        rng.shuffle(fresh)
        order.extend(fresh)
    return order[:size], order[size:]


def ptx_backward(model: Any, batch: Batch, weight: float) -> float:
    """SFT's loss on ``batch``'s masked tokens, back-propagated with ``weight`` (the PTX term of an RL step).

    Returns the unweighted loss (0 when nothing in the batch is supervised; a non-finite loss
    is returned but not back-propagated).
    """
    labels = batch.input_ids.masked_fill(batch.loss_mask == 0, -100)  # (B, T): only masked tokens are targets
    nll, count = masked_lm_loss(model, batch.input_ids, batch.attention_mask, labels)
    if count == 0:
        return 0.0
    if torch.isfinite(nll):
        (weight * nll).backward()
    return float(nll.detach())
