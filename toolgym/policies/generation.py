"""Batched sampling on a local causal LM: KV cache, left padding, per-request seeds, log-probs.

This is toolgym's own decoding loop rather than ``model.generate``, for three guarantees:

* **Batch invariance.** Every request draws its random numbers from its own
  ``torch.Generator`` seeded with the request's seed, one uniform number per sampled token, on
  the CPU. Which batch a request lands in, and on which device, does not change its draws, so
  the same seed gives the same tokens alone or in a batch of 32 (up to float rounding in the
  forward pass, which flips a token only when a draw falls within ~1e-6 of a boundary).
* **Log-probs the trainer can use.** ``logprobs`` are the *raw model* log-probabilities,
  ``log_softmax(logits)`` at temperature 1 over the full vocabulary, of each sampled token,
  whatever temperature and top-p were used to pick it. That is what an RL trainer recomputes
  for the current policy, so the two are directly comparable (vLLM's default "raw" log-probs
  are the same quantity).
* **Router logits off.** MoE models generate with ``output_router_logits`` forced off,
  since transformers fails to generate with it on.
* **Routed experts on request.** With ``record_routing=True`` each sampled token also gets,
  per MoE layer, the top-k experts of the forward position whose logits sampled it (the
  prompt's last token for the first, the previous sampled token after that); a trainer
  replays them (``toolgym.policies.routing``, routing replay).

Finished rows are dropped from the batch (and the KV cache) as they end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from toolgym.policy import SamplingParams

SEED_MASK = 2**63 - 1


class GenerationJob(BaseModel):
    """One prompt to continue, already tokenized."""

    model_config = ConfigDict(extra="forbid")

    prompt_ids: list[int] = Field(min_length=1)
    seed: int
    sampling: SamplingParams = Field(default_factory=SamplingParams)


class Generated(BaseModel):
    """What one job produced."""

    model_config = ConfigDict(extra="forbid")

    token_ids: list[int]
    """Every sampled id, the end-of-turn token included when one was sampled."""
    logprobs: list[float]
    """Raw model log-prob (temperature 1, full vocabulary) of each sampled id."""
    text: str
    """The decoded ids without a final end-of-turn token; a stop string that ended the turn is kept."""
    finish_reason: Literal["stop", "length"]
    routed_experts: list[list[list[int]]] | None = None
    """With ``record_routing``: per sampled id, per MoE layer, the top-k experts of the position that sampled it."""


GREEDY_BELOW = 1e-5
"""Temperatures below this sample the arg-max: a vanishing temperature would overflow the logits."""


def sample_tokens(logits: Any, temperature: Any, top_p: Any, uniforms: Any) -> Any:
    """Pick one token per row by inverse-CDF sampling of the tempered, top-p-cut distribution.

    Args:
        logits: (B, V) float32 logits.
        temperature: (B,) temperatures; below ``GREEDY_BELOW`` (0 included) picks the arg-max,
            since dividing by a vanishing temperature overflows to inf and NaN.
        top_p: (B,) nucleus mass in (0, 1]; the most likely token is always kept, even when
            ``top_p`` rounds to 0 in float32.
        uniforms: (B,) draws in [0, 1), one per row, from that row's own generator.

    Returns:
        (B,) int64 token ids.
    """
    import torch

    greedy = temperature < GREEDY_BELOW
    scaled = logits / torch.where(greedy, torch.ones_like(temperature), temperature)[:, None]  # (B, V)
    probs = torch.softmax(scaled, dim=-1)
    if bool((top_p < 1).any()):
        sorted_p, order = torch.sort(probs, dim=-1, descending=True, stable=True)  # (B, V)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass of strictly more likely tokens
        kept = before < top_p[:, None]  # (B, V), sorted order
        kept[:, 0] = True  # the most likely token, whatever top_p rounded to
        keep = torch.zeros_like(probs, dtype=torch.bool).scatter_(1, order, kept)  # (B, V)
        probs = probs * keep
    # The CDF runs in vocabulary order, not sorted order: near-equal probabilities swapping
    # places under float noise would otherwise change which token a draw lands on.
    cdf = torch.cumsum(probs, dim=-1)  # (B, V)
    total = cdf[:, -1:]  # (B, 1)
    # Strictly below the total, so rounding can never land past the last kept token.
    target = torch.minimum(uniforms[:, None] * total, torch.nextafter(total, torch.zeros_like(total)))  # (B, 1)
    sampled = torch.searchsorted(cdf, target, right=True).squeeze(1)  # (B,)
    return torch.where(greedy, logits.argmax(dim=-1), sampled)


@contextlib.contextmanager
def router_logits_off(model: Any) -> Iterator[None]:
    """Turn ``output_router_logits`` off for the duration, restoring the caller's setting."""
    config = model.config
    had = hasattr(config, "output_router_logits")
    old = getattr(config, "output_router_logits", None)
    if had:
        config.output_router_logits = False
    try:
        yield
    finally:
        if had:
            config.output_router_logits = old


class _Row:
    """Decoding state of one job."""

    def __init__(self, job: GenerationJob, budget: int):
        import torch

        self.job, self.budget = job, budget
        self.generator = torch.Generator().manual_seed(job.seed & SEED_MASK)
        self.ids: list[int] = []
        self.logprobs: list[float] = []
        self.routed: list[list[list[int]]] = []
        self.finish: Literal["stop", "length"] | None = None
        self.checked = 0  # characters of decoded text already searched for stop strings

    def draw(self) -> float:
        import torch

        if self.job.sampling.temperature <= 0:
            return 0.0  # greedy rows consume no randomness
        return float(torch.rand((), generator=self.generator))


def generate_batch(
    model: Any, jobs: Sequence[GenerationJob], *, pad_id: int, end_ids: set[int], max_context: int,
    decode: Callable[[list[int]], str], record_routing: bool = False,
) -> list[Generated]:
    """Continue every job's prompt in one batch; see the module docstring for the guarantees.

    Args:
        model: A transformers causal LM in eval mode.
        jobs: Prompts with their seeds and sampling parameters (each must fit ``max_context``).
        pad_id: Token id used for left padding.
        end_ids: Ids that end a turn (kept in ``token_ids``, dropped from ``text``).
        max_context: Longest sequence (prompt plus generation) the model accepts.
        decode: Token ids to text, special tokens kept.
        record_routing: Record each sampled token's routed experts (``Generated.routed_experts``);
            a model whose routers cannot be recorded raises ``RoutingError`` before any forward.
    """
    import torch

    from toolgym.policies.routing import RoutingHooks, last_position_routing

    rows = [_Row(j, min(j.sampling.max_new_tokens, max_context - len(j.prompt_ids))) for j in jobs]
    device = next(model.parameters()).device
    hooks = RoutingHooks(model, field="record_routing") if record_routing else None
    with torch.inference_mode(), router_logits_off(model), hooks or contextlib.nullcontext():
        logits, cache, mask, positions = _prefill(model, jobs, pad_id, device)
        live = list(range(len(rows)))  # batch position -> row index
        while live:
            routed = last_position_routing(hooks, len(live)).tolist() if hooks else None  # (B, L, k)
            _sample_step([rows[i] for i in live], logits, device, end_ids, decode, routed)
            keep = [b for b, i in enumerate(live) if rows[i].finish is None]
            if not keep:
                break
            if len(keep) < len(live):  # drop finished rows so they cost nothing more
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index]
                live = [live[b] for b in keep]
            step = torch.tensor([[rows[i].ids[-1]] for i in live], device=device)  # (B, 1)
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)  # (B, T + 1)
            positions = positions + 1  # (B, 1)
            out = model(input_ids=step, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1, :].float()  # (B, V)
    return [_result(r, end_ids, decode) for r in rows]


def _prefill(model: Any, jobs: Sequence[GenerationJob], pad_id: int, device: Any) -> tuple[Any, Any, Any, Any]:
    """Run the left-padded prompts; return last logits, the cache, the mask and last positions."""
    import torch
    from transformers import DynamicCache

    width = max(len(j.prompt_ids) for j in jobs)
    ids = torch.full((len(jobs), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(jobs), width), dtype=torch.long)  # (B, T)
    for b, job in enumerate(jobs):
        ids[b, width - len(job.prompt_ids) :] = torch.tensor(job.prompt_ids)
        mask[b, width - len(job.prompt_ids) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    # Positions count real tokens only, so a padded prompt sees the same RoPE phases as alone.
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, T)
    cache = DynamicCache(config=model.config)
    out = model(
        input_ids=ids, attention_mask=mask, position_ids=position_ids, past_key_values=cache, use_cache=True,
        logits_to_keep=1,
    )
    return out.logits[:, -1, :].float(), out.past_key_values, mask, position_ids[:, -1:]


def _sample_step(rows: list[_Row], logits: Any, device: Any, end_ids: set[int], decode: Callable[[list[int]], str],
                 routed: list[list[list[int]]] | None = None) -> None:
    """Sample one token for each live row, record its raw log-prob (and routing) and check the stop rules."""
    import torch

    temperature = torch.tensor([r.job.sampling.temperature for r in rows], device=device)
    top_p = torch.tensor([r.job.sampling.top_p for r in rows], device=device)
    uniforms = torch.tensor([r.draw() for r in rows], device=device)
    tokens = sample_tokens(logits, temperature, top_p, uniforms)  # (B,)
    raw = torch.log_softmax(logits, dim=-1).gather(1, tokens[:, None]).squeeze(1)  # (B,)
    for b, (row, token, logprob) in enumerate(zip(rows, tokens.tolist(), raw.tolist(), strict=True)):
        row.ids.append(token)
        row.logprobs.append(logprob)
        if routed is not None:
            row.routed.append(routed[b])  # (L, k): the experts of the position these logits came from
        if token in end_ids or _hit_stop_string(row, decode):
            row.finish = "stop"
        elif len(row.ids) >= row.budget:
            row.finish = "length"


def _hit_stop_string(row: _Row, decode: Callable[[list[int]], str]) -> bool:
    stops = row.job.sampling.stop
    if not stops:
        return False
    text = decode(row.ids)
    start = max(0, row.checked - max(len(s) for s in stops))  # a stop string may straddle tokens
    row.checked = len(text)
    return any(s in text[start:] for s in stops)


def _result(row: _Row, end_ids: set[int], decode: Callable[[list[int]], str]) -> Generated:
    body = row.ids[:-1] if row.ids and row.ids[-1] in end_ids else row.ids
    return Generated(token_ids=row.ids, logprobs=row.logprobs, text=decode(body), finish_reason=row.finish or "length",
                     routed_experts=row.routed if row.routed else None)
