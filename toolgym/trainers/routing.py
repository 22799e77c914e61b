"""Routing replay (R3) in the training forward, and the metrics of the train-inference routing mismatch.

An MoE router is a top-k over scores: a tiny numerical difference between the generation and
the training forward (another dtype, kernel or batch shape, or weights one update newer) flips
which experts a token uses, and with them its log-prob. Routing replay makes the training
forward send every replayed position to the experts recorded at generation, while the mixing
weights still come from the training router's own scores, so the router keeps learning.

What is replayed: ``Batch.routed_experts`` ``(B, T, L, k)`` holds, for each sampled token ``t``,
the experts of the position that sampled it (``t - 1``), the position whose logits give its
log-prob. The training forward forces position ``p`` to the record of token ``p + 1``. Every
other position (prompt and environment tokens, except the prompt's last, and a row's final
token) is routed normally by the training router: those positions were routed by a prefill,
which is not recorded.

Metrics (names in ``toolgym.trainers.metrics``), over the sampled tokens with a record:

- agreement per MoE layer: fraction of top-k slots where the experts the training forward
  used equal the recorded ones (as sets per token); 1.0 under replay;
- router agreement per layer: the same for the experts the training router itself would pick
  (the mismatch replay removes);
- mean ``|log π_train - log π_behaviour|`` with and without replay; the training forward
  gives one, a second forward without gradient the other.

Example::

    with routing_trace(model, micro.routed_experts, replay=True) as trace:
        outputs = training_forward(model, micro.input_ids, micro.attention_mask)
    stats = routing_terms(model, micro, trace, logp, replay=True, rows=1.0)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from toolgym.policies.routing import RoutingError, RoutingHooks, moe_gates
from toolgym.trainers import metrics as m

if TYPE_CHECKING:
    from torch import Tensor

FIELD = "algorithm.routing_replay"


def check_replayable(model: Any) -> None:
    """Fail before any work when ``model``'s routers cannot be replayed (dense, unknown MoE class)."""
    moe_gates(model, field=FIELD)
    checkpointing = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5.x name
    if checkpointing is None:
        checkpointing = getattr(model, "is_gradient_checkpointing", False)
    if checkpointing:
        raise RoutingError(f"{FIELD}: gradient checkpointing recomputes the forward during backward, after the "
                           "replay hooks are gone (other experts); turn gradient checkpointing off to replay routing")


def forced_routing(routed: Tensor) -> list[Tensor]:
    """Per MoE layer, the ``(B*T, k)`` experts to force at each position (-1: route normally).

    ``routed`` ``(B, T, L, k)`` is aligned with tokens: token ``t``'s record belongs to position ``t - 1``.
    """
    import torch

    forced = torch.full_like(routed, -1)  # (B, T, L, k)
    forced[:, :-1] = routed[:, 1:]
    k = routed.shape[-1]
    return [forced[:, :, layer].reshape(-1, k) for layer in range(routed.shape[2])]


@contextlib.contextmanager
def routing_trace(model: Any, routed: Tensor | None, *, replay: bool) -> Iterator[RoutingHooks | None]:
    """Hook the forwards inside the block: observe routing, and force ``routed`` when ``replay``.

    Yields ``None`` (and changes nothing) when the rows carry no routing records.
    """
    if routed is None:
        yield None
        return
    if replay:
        check_replayable(model)
    with RoutingHooks(model, forced_routing(routed) if replay else None, field=FIELD) as hooks:
        yield hooks


def recorded_targets(routed: Tensor, loss_mask: Tensor) -> Tensor:
    """``(B, T-1)`` float: 1 on sampled target tokens that have a routing record."""
    return loss_mask[:, 1:] * (routed[:, 1:, 0, 0] >= 0).float()


def _slot_agreement(chosen: Tensor, recorded: Tensor, keep: Tensor) -> float:
    """Fraction of the kept tokens' recorded top-k slots whose expert is among ``chosen`` ``(N, k)``."""
    hit = (recorded[:, :, None] == chosen[:, None, :]).any(dim=-1)  # (N, k)
    return float(hit[keep].float().mean())


def agreement_metrics(hooks: RoutingHooks, routed: Tensor) -> dict[str, float]:
    """Per-layer agreement of the used and the router's own experts with the records (positions that have one)."""
    forced = forced_routing(routed)
    out: dict[str, float] = {}
    for layer, (index, recorded) in enumerate(zip(hooks.layers, forced, strict=True)):
        used, natural = hooks.used[layer], hooks.natural[layer]
        keep = recorded[:, 0] >= 0  # (N,)
        if used is None or natural is None or not bool(keep.any()):
            return {}
        out[m.ROUTING_LAYER_AGREEMENT.format(layer=index)] = _slot_agreement(used, recorded, keep)
        out[m.ROUTING_LAYER_ROUTER_AGREEMENT.format(layer=index)] = _slot_agreement(natural, recorded, keep)
    n = len(hooks.layers)
    out[m.ROUTING_AGREEMENT] = sum(out[m.ROUTING_LAYER_AGREEMENT.format(layer=i)] for i in hooks.layers) / n
    out[m.ROUTING_ROUTER_AGREEMENT] = sum(out[m.ROUTING_LAYER_ROUTER_AGREEMENT.format(layer=i)] for i in hooks.layers) / n
    return out


def _gap(logp: Tensor, behaviour: Tensor, keep: Tensor) -> float:
    """Mean ``|logp - behaviour|`` over the kept tokens."""
    return float(((logp.detach() - behaviour).abs() * keep).sum() / keep.sum().clamp(min=1))


def replay_logprobs(model: Any, input_ids: Tensor, attention_mask: Tensor, routed: Tensor | None, *,
                    replay: bool) -> tuple[Tensor, RoutingHooks | None]:
    """``(B, T-1)`` log-prob of each next token in a forward without gradient, replaying or not."""
    import torch

    from toolgym.trainers import rl
    from toolgym.trainers.moe import training_forward

    with torch.no_grad(), routing_trace(model, routed, replay=replay) as hooks:
        logits = training_forward(model, input_ids, attention_mask).logits[:, :-1]  # (B, T-1, V)
        return rl.token_logprobs(logits, input_ids[:, 1:]), hooks


def routing_terms(model: Any, micro: Any, trace: RoutingHooks | None, logp: Tensor, *, replay: bool,
                  rows: float) -> dict[str, float]:
    """One micro-batch's routing metrics, each times ``rows`` (its fraction of the minibatch's rows).

    Args:
        model: The policy.
        micro: The micro-batch (a ``Batch`` with ``routed_experts``, ``old_logp``, ``loss_mask``).
        trace: What :func:`routing_trace` saw in the training forward (``None``: no records, no metrics).
        logp: ``(B, T-1)`` the training forward's log-probs of the next tokens.
        replay: Whether the training forward replayed; the other mode runs once more without gradient.
        rows: Weight of this micro-batch in the minibatch's averages.
    """
    routed = getattr(micro, "routed_experts", None)
    if trace is None or routed is None:
        return {}
    keep = recorded_targets(routed, micro.loss_mask)  # (B, T-1)
    if float(keep.sum()) == 0:
        return {}
    out = agreement_metrics(trace, routed)
    other, _ = replay_logprobs(model, micro.input_ids, micro.attention_mask, routed, replay=not replay)
    behaviour = micro.old_logp[:, 1:]  # (B, T-1)
    now, then = _gap(logp, behaviour, keep), _gap(other, behaviour, keep)
    out[m.ROUTING_GAP_REPLAY], out[m.ROUTING_GAP_FREE] = (now, then) if replay else (then, now)
    out[m.ROUTING_RECORDED_FRAC] = float(keep.sum() / micro.loss_mask[:, 1:].sum().clamp(min=1))
    return {key: value * rows for key, value in out.items()}


def measure_routing(model: Any, input_ids: Tensor, attention_mask: Tensor, routed: Tensor, behaviour: Tensor,
                    loss_mask: Tensor) -> dict[str, float]:
    """Both forwards without gradient: agreement per layer and the log-prob gap with and without replay.

    ``behaviour`` and ``loss_mask`` are ``(B, T)`` aligned with tokens (as in ``Batch``). The
    router agreement is the free forward's; the agreement the replayed forward's.
    """
    keep = recorded_targets(routed, loss_mask)  # (B, T-1)
    free, free_hooks = replay_logprobs(model, input_ids, attention_mask, routed, replay=False)
    forced, forced_hooks = replay_logprobs(model, input_ids, attention_mask, routed, replay=True)
    if free_hooks is None or forced_hooks is None:
        return {}
    out = {key: value for key, value in agreement_metrics(free_hooks, routed).items() if "router_agreement" in key}
    out.update({key: value for key, value in agreement_metrics(forced_hooks, routed).items()
                if "router_agreement" not in key})
    out[m.ROUTING_GAP_FREE] = _gap(free, behaviour[:, 1:], keep)
    out[m.ROUTING_GAP_REPLAY] = _gap(forced, behaviour[:, 1:], keep)
    out[m.ROUTING_RECORDED_FRAC] = float(keep.sum() / loss_mask[:, 1:].sum().clamp(min=1))
    return out
