"""The closed-loop critic in GRPO: checked every iteration against verified outcomes, and trained on them.

Kimi K2's self-critique rubric reward lets the model judge its own responses where no check
can, and refines that critic with the verifiable signals of on-policy rollouts. Here, with
``critic.outcome`` naming a verifiable (check) criterion of the rubric:

1. **check** (every iteration): the critic criteria of the iteration's scores are compared with
   the outcome on the siblings whose outcomes differ (``toolgym.rubrics.critics.online``) and
   logged as ``critic/agreement/<criterion>``, ``critic/auc/<criterion>``, ...
2. **train** (``critic.train_critic``): verified pairs become ``PairwiseCritic`` prompts about the
   outcome criterion, whose right answer is known. The policy samples ``group_size`` judgements
   per prompt; one that names the verified winner gets ``critic.agree_reward``, a wrong or tie
   verdict 0, and one that does not parse is dropped and counted (never a silent 0). These
   groups get group-relative advantages like any other and join the iteration's batch, so one
   update trains both roles (self-critique).

With ``critic.verdict: label`` the critic answers with one token instead of JSON
(``toolgym.rubrics.critics.label``): its verdict is read from the log-probabilities of "A" and
"B" after a fixed prefix, so it always parses, and each verified pair is asked in both orders.
Every prompt's group is then the verdict's whole action space, its two labels, rewarded as
samples would be (``agree_reward`` for the verified winner, 0 for the other): the same
group-relative update, without sampling noise and without a format to learn first.

Those constant advantages have a blind spot: a preference for one label that both orders share
(the untrained tiny model prefers "A" by ~0.5 nats on every prompt) gets +a in one order and -a
in the other, so it is never corrected, and no single-order verdict can beat chance until the
learned content outweighs it. ``critic.label_advantage: miss`` scales each prompt's advantages by
how much its verdict missed (``1 - p(winner)``): the update is then the gradient of
log p(winner), a logistic loss through the same clipped surrogate, which removes the shared
preference. Per prompt, though, that logistic loss is dominated by the preference: on the tiny model,
after 40 supervised steps on fixed pairs, it was still 0.62-0.69 (the base rate is 0.69), although the
both-order verdict already ordered 85-90% of the training pairs. ``critic.label_advantage: pair``
trains the verdict that is read, both orders summed: both orders of a pair get the miss of that summed
verdict, so the update is the gradient of its logistic loss, in which any label or position preference
cancels; on the same pairs that loss fell to 0.02-0.07 (``benchmarks/critic_objective.py``).
``critic.loss_weight`` scales every critic advantage (their share of the joint loss) and
``critic.extra_updates`` adds critic-only updates per iteration on verdicts read afresh.
``critic.replay_pairs`` adds verified pairs of past iterations to each iteration's critic rows (asked
of the current model like fresh ones), so the critic fits a growing set of pairs rather than
memorising each iteration's few.

``critic.critic: self_pairwise`` also registers a critic run by the policy itself, so the rubric's
critic criteria are judged by the model being trained: a ``PairwiseCritic`` (JSON verdicts), or
with ``critic.verdict: label`` a ``LabelPairwiseCritic`` whose verdicts are this loop's label
reads, so the critic that ``train_critic`` trains is the one that scores.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import torch

from toolgym.envs.canonical import seed_from
from toolgym.policy import PolicyRequest, PolicyTurn, SamplingParams
from toolgym.rollouts.episode import Episode
from toolgym.rollouts.rows import TokenRow
from toolgym.rubrics import Score
from toolgym.rubrics.critics.label import (
    Label,
    LabelTokens,
    LabelVerdict,
    label_agreement,
    label_prompt,
    label_tokens,
    swapped,
)
from toolgym.rubrics.critics.label_critic import LabelPairwiseCritic, LabelQuestion
from toolgym.rubrics.critics.online import CriterionCheck, RunningCalibration, check_critics, reweighted, verified_pairs
from toolgym.rubrics.critics.pairwise import PairwiseCritic, pairwise_prompt
from toolgym.rubrics.critics.parse import JudgementParseError, PairItem, parse_pairwise
from toolgym.rubrics.critics.transcript import render_transcript
from toolgym.rubrics.rubric import Criterion, Rubric
from toolgym.trainers import metrics as m
from toolgym.trainers import rl
from toolgym.trainers.batch import Batch, make_batch
from toolgym.trainers.config import ConfigError, TrainConfig
from toolgym.trainers.moe import training_forward

TRANSCRIPT_CHARS = 1200
"""Per-response transcript limit in critic-training prompts (tiny models have short contexts)."""


def check_metrics(checks: Sequence[CriterionCheck]) -> dict[str, float]:
    """The ``critic/*`` metrics of per-criterion checks (a figure that is undefined is left out, not 0)."""
    out: dict[str, float] = {}
    for c in checks:
        out[m.CRITIC_PAIRS.format(criterion=c.criterion)] = float(c.pairs)
        out[m.CRITIC_UNSCORABLE.format(criterion=c.criterion)] = float(c.unscorable)
        if c.agreement is not None:
            out[m.CRITIC_AGREEMENT.format(criterion=c.criterion)] = c.agreement
        if c.auc is not None:
            out[m.CRITIC_AUC.format(criterion=c.criterion)] = c.auc
    return out


def judgement_reward(text: str, criterion: Criterion, winner: str, agree_reward: float) -> float | None:
    """``agree_reward`` when the judgement names ``winner`` for ``criterion``, 0 for the other side or a tie,
    None when no judgement can be read from ``text`` (the sample is unscorable)."""
    try:
        verdict = parse_pairwise(text, [criterion])[criterion.id]
    except JudgementParseError:
        return None
    if not isinstance(verdict, PairItem):
        return None
    return agree_reward if verdict.winner == winner else 0.0


def judgement_row(turn: PolicyTurn, episode_id: str, group: str) -> TokenRow | None:
    """The training row of one sampled judgement (prompt tokens masked out), or None when generation failed."""
    prompt, ids, logprobs = turn.prompt_token_ids, turn.token_ids, turn.logprobs
    if turn.error is not None or not prompt or not ids or logprobs is None or len(logprobs) != len(ids):
        return None
    n = len(prompt)
    return TokenRow(episode_id=episode_id, group=group, input_ids=[*prompt, *ids], loss_mask=[0] * n + [1] * len(ids),
                    behaviour_logprobs=[0.0] * n + list(logprobs), prompt_len=n, turn_spans=[(n, n + len(ids))],
                    turn_indices=[0], ends_episode=True, terminated=turn.finish_reason == "stop",
                    truncated=turn.finish_reason == "length", metadata={"critic": True})


def label_advantages(p_winner: torch.Tensor, agree_reward: float, kind: str, scale_by_std: bool) -> torch.Tensor:
    """``(N, 2)`` advantages of each prompt's (winner label, other label) rows from ``(N,)`` p(winner).

    "constant": the group-relative advantages of rewards (agree_reward, 0), equal for every prompt.
    "miss": ``agree_reward * (1 - p_winner)`` and its negative: the two rows' policy gradient is then
    ``agree_reward`` times the gradient of ``log p(winner)`` among the two labels, large where the
    verdict missed and vanishing where it is already sure and right.
    "pair": ``p_winner`` holds each pair's two orders adjacently; both orders get
    ``agree_reward * (1 - sigmoid(o))`` with ``o`` the pair's log-odds of the winner summed over both orders,
    so the update is the gradient of ``log sigmoid(o)``: a logistic loss on the both-order verdict. A
    preference for one label or position adds to one order's log-odds what it takes from the other's, so
    it neither enters ``o`` nor gets any gradient; only what the responses say does.
    """
    if kind == "constant":
        group = rl.group_advantages(torch.tensor([[agree_reward, 0.0]]), scale_by_std=scale_by_std)[0]  # (2,)
        return group.expand(len(p_winner), 2).clone()
    if kind == "miss":
        miss = agree_reward * (1.0 - p_winner.float())  # (N,)
        return torch.stack([miss, -miss], dim=1)  # (N, 2)
    if kind == "pair":
        if len(p_winner) % 2:
            raise ValueError(f"critic.label_advantage 'pair' needs each pair's two orders adjacent, got {len(p_winner)} verdicts")
        p = p_winner.double().clamp(1e-12, 1 - 1e-12).view(-1, 2)  # (P, 2): both orders of each pair
        odds = torch.log(p / (1 - p)).sum(dim=1)  # (P,): the pair's verdict, both orders summed
        miss = (agree_reward * (1.0 - torch.sigmoid(odds))).float().repeat_interleave(2)  # (N,)
        return torch.stack([miss, -miss], dim=1)  # (N, 2)
    raise ValueError(f"critic.label_advantage must be 'constant', 'miss' or 'pair', got {kind!r}")


def label_row(prompt: Sequence[int], token: int, logp: float, episode_id: str, group: str) -> TokenRow:
    """The training row of one label verdict: the prompt (masked out, ending with the verdict prefix) and the label token."""
    n = len(prompt)
    return TokenRow(episode_id=episode_id, group=group, input_ids=[*prompt, token], loss_mask=[0] * n + [1],
                    behaviour_logprobs=[0.0] * n + [logp], prompt_len=n, turn_spans=[(n, n + 1)], turn_indices=[0],
                    ends_episode=True, terminated=True, truncated=False, metadata={"critic": True})


def label_forward(model: Any, prompts: Sequence[Sequence[int]], tokens: LabelTokens, pad_id: int) -> torch.Tensor:
    """``(N, 2)`` log-probabilities of "A" and "B" as the next token after each prompt, in one right-padded
    forward of the trainer's (``training_forward``), with gradient when autograd is on."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)  # (N, W)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)  # (N, W)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = torch.tensor(list(p), dtype=torch.long)
        mask[i, : len(p)] = 1
    logits = training_forward(model, ids, mask).logits  # (N, W, V)
    last = logits[torch.arange(len(prompts)), mask.sum(dim=1) - 1].float()  # (N, V): predicts the label
    return torch.log_softmax(last, dim=-1)[:, [tokens.a, tokens.b]]  # (N, 2)


def label_logprobs(model: Any, prompts: Sequence[Sequence[int]], tokens: LabelTokens, pad_id: int,
                   micro_batch_size: int = 16) -> torch.Tensor:
    """``(N, 2)`` log-probabilities of "A" and "B" as the next token after each prompt (eval mode, no gradient).

    The forward is the trainer's (``label_forward``), so these are exactly the behaviour log-probs
    the update's ratio compares against.
    """
    out = torch.zeros(len(prompts), 2)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(prompts), micro_batch_size):
            out[start : start + micro_batch_size] = label_forward(model, prompts[start : start + micro_batch_size], tokens, pad_id)
    model.train(was_training)
    return out


def concat_batches(first: Batch | None, second: Batch | None, pad_id: int) -> Batch | None:
    """Rows of both batches in one, right-padded to the longer width (either may be None)."""
    if first is None or second is None:
        return first if second is None else second
    width = max(first.input_ids.shape[1], second.input_ids.shape[1])
    out: dict[str, Any] = {}
    for f in fields(Batch):
        a, b = getattr(first, f.name), getattr(second, f.name)
        if a is None and b is None:
            out[f.name] = None
            continue
        if a is None or b is None:
            raise ValueError(f"cannot mix batches where only one has {f.name!r} (critic rows carry no {f.name})")
        if a.dim() >= 2:
            fill = pad_id if f.name == "input_ids" else 0
            a, b = (torch.nn.functional.pad(x, (0, width - x.shape[1]), value=fill) for x in (a, b))  # (B, width)
        out[f.name] = torch.cat([a, b])
    return Batch(**out)


def _with_critic(critics: Any, critic: Any) -> dict[str, Any]:
    """The trainer's critics (None, a list or a mapping) with ``critic`` added under its name."""
    if critics is None:
        named: dict[str, Any] = {}
    elif isinstance(critics, Mapping):
        named = dict(critics)
    else:
        named = {c.name: c for c in critics}
    if critic.name in named:
        raise ConfigError(f"critic.name {critic.name!r} is already a given critic: rename critic.name or drop that critic")
    return {**named, critic.name: critic}


class CriticLoop:
    """Checks the critic against verified outcomes every iteration and, when configured, trains it.

    Args:
        config: The run's config (``critic`` section, group size, zero-variance filter).
        sampler: The trainer's ``Sampler`` (its policy samples critic judgements; its rubric names the outcome).
    """

    def __init__(self, config: TrainConfig, sampler: Any):
        c = config.critic
        if c.outcome is None:
            raise ConfigError("critic.outcome is not set: name the verifiable rubric criterion to check the critic against")
        self.config, self.sampler = config, sampler
        rubric: Rubric = sampler.rubric
        by_id = {cr.id: cr for cr in rubric.criteria}
        if c.outcome not in by_id:
            raise ConfigError(f"critic.outcome {c.outcome!r} is no criterion of rubric {rubric.name!r}; expected one of {sorted(by_id)}")
        self.outcome: Criterion = by_id[c.outcome]
        self.label_tokens: LabelTokens | None = None
        """critic.verdict "label": the verdict prefix and label token ids of the policy's tokenizer."""
        if c.verdict == "label":
            try:
                self.label_tokens = label_tokens(sampler.policy.tokenizer)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        if c.critic == "self_pairwise":  # the policy judges the rubric's critic criteria: JSON samples or label verdicts
            critic = (LabelPairwiseCritic(self.read_label_questions, name=c.name, pair_verdict=c.label_advantage == "pair")
                      if c.verdict == "label"
                      else PairwiseCritic(sampler.policy, name=c.name, seed=config.run.seed))
            sampler.critics = _with_critic(sampler.critics, critic)
        critic_ids = [cr.id for cr in rubric.criteria if cr.source.type == "critic"]
        self.calibration = RunningCalibration(c.outcome, critic_ids, c.reweight_window, c.threshold) if c.reweight else None
        """critic.reweight: the running calibration the critic criteria's weights are re-fitted from."""
        self.trained_items: Sequence[tuple[Episode, Episode, str]] = []
        """The (A, B, verified winner) pairs of the last ``step``'s critic rows (``extra_updates`` re-asks them)."""
        self.replay: collections.deque[tuple[Episode, Episode, str]] = collections.deque(maxlen=c.replay_size)
        """critic.replay_pairs: verified pairs of past iterations, newest last."""

    def step(self, iteration: int, episodes: Sequence[Episode], scores: Sequence[Score],
             batch: Batch | None) -> tuple[Batch | None, dict[str, float]]:
        """Check the critic on this iteration's groups; with ``train_critic``, mix critic rows into ``batch``."""
        k, c = self.config.algorithm.group_size, self.config.critic
        groups = [list(range(s, min(s + k, len(scores)))) for s in range(0, len(scores), k)]  # siblings adjacent
        score_groups = [[scores[i] for i in g] for g in groups]
        out = check_metrics(check_critics(score_groups, c.outcome or "", threshold=c.threshold))
        rng = random.Random(seed_from(self.config.run.seed, "critic", iteration))
        pairs = [(g, p) for g, sg in zip(groups, score_groups, strict=True)
                 for p in verified_pairs(sg, c.outcome or "", c.threshold, rng=rng)]
        out[m.CRITIC_VERIFIED_PAIRS] = float(len(pairs))
        if self.calibration is not None:
            out.update(self.reweight(scores))
        self.trained_items = []
        if not c.train_critic or not (pairs or (c.replay_pairs and self.replay)):
            return batch, out  # nothing verified to train on (a policy whose siblings all agree, with no replay)
        rng.shuffle(pairs)
        wanted = round(c.mix_fraction / (1 - c.mix_fraction) * len(episodes))  # critic rows for the fraction
        per_pair = 4 if c.verdict == "label" else k  # label: 2 orders x 2 labels; json: k sampled judgements
        fresh: list[tuple[Episode, Episode, str]] = [(episodes[g[p.a]], episodes[g[p.b]], p.winner) for g, p in pairs]
        items = fresh[: max(1, wanted // per_pair)]  # every verified pair joins the replay; these are asked now
        # Past pairs, asked of the current model like the fresh ones; also when this iteration has none (its
        # siblings all agree on the outcome), so the critic keeps training once the policy has converged.
        if c.replay_pairs and self.replay:
            items += rng.sample(list(self.replay), min(c.replay_pairs, len(self.replay)))
        self.replay.extend(fresh)
        self.trained_items = items
        critic_batch, stats = self.critic_batch(iteration, items)
        return concat_batches(batch, critic_batch, self.sampler.pad_id), {**out, **stats}

    def state(self) -> dict[str, Any]:
        """What a resumed run needs to go on as if never stopped: the replay pairs, the running calibration
        and the rubric's re-fitted weights (pickled with the checkpoint)."""
        return {"replay": list(self.replay), "calibration": self.calibration, "rubric": self.sampler.rubric}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.replay.clear()
        self.replay.extend(state["replay"])
        self.calibration, self.sampler.rubric = state["calibration"], state["rubric"]

    def extra_updates(self, iteration: int, update: Any) -> dict[str, float]:
        """``critic.extra_updates`` critic-only updates (``update(batch)``: the trainer's) on the last step's pairs,
        each on label verdicts read afresh; returns the last pass's critic metrics (``{}`` when there is nothing to do)."""
        stats: dict[str, float] = {}
        if self.label_tokens is None or not self.trained_items:
            return stats
        for _ in range(self.config.critic.extra_updates):
            batch, stats = self.label_batch(iteration, self.trained_items)
            if batch is None:
                break
            update(batch)
        return stats

    def reweight(self, scores: Sequence[Score]) -> dict[str, float]:
        """Add ``scores`` to the running calibration and give the sampler's rubric the re-fitted critic weights."""
        if self.calibration is None:
            return {}
        self.calibration.add(scores)
        fit = self.calibration.fit()
        if fit is None:  # too few scores with every criterion yet: weights stay as they are
            return {}
        self.sampler.rubric = reweighted(self.sampler.rubric, fit.weights)
        return {m.CRITIC_WEIGHT.format(criterion=c.id): c.weight for c in self.sampler.rubric.criteria if c.id in fit.weights}

    def critic_batch(self, iteration: int, items: Sequence[tuple[Episode, Episode, str]]) -> tuple[Batch | None, dict[str, float]]:
        """Sample ``group_size`` judgements per (A, B, verified winner), reward agreement, and batch the groups
        (``critic.verdict`` "label": ``label_batch`` instead)."""
        if self.label_tokens is not None:
            return self.label_batch(iteration, items)
        cfg, k = self.config, self.config.algorithm.group_size
        sampling = SamplingParams(max_new_tokens=cfg.critic.max_new_tokens, temperature=cfg.temperature_at(iteration),
                                  top_p=cfg.rollout.top_p)
        base = seed_from(cfg.run.seed, "critic-sample", iteration) >> 33
        requests = []
        for p, (a, b, _) in enumerate(items):
            messages = pairwise_prompt(self.sampler.rubric, [self.outcome], a.task.instruction,
                                       render_transcript(a, TRANSCRIPT_CHARS, include_opening=False),
                                       render_transcript(b, TRANSCRIPT_CHARS, include_opening=False))
            requests += [PolicyRequest(episode_id=f"critic/{iteration}/{p}/{j}", task_id=a.task.id, messages=messages,
                                       seed=base + p * k + j, sampling=sampling) for j in range(k)]
        self.sampler.model.eval()
        turns = asyncio.run(self.sampler.policy.generate(requests))
        return self._rows(iteration, items, turns)

    def _rows(self, iteration: int, items: Sequence[tuple[Episode, Episode, str]],
              turns: Sequence[PolicyTurn]) -> tuple[Batch | None, dict[str, float]]:
        cfg, k = self.config, self.config.algorithm.group_size
        rows: list[TokenRow] = []
        advantages, rewards, baselines = [], [], []
        unscorable = agreed = parsed = 0
        for p, (_, _, winner) in enumerate(items):
            group: list[tuple[TokenRow, float]] = []
            for j in range(k):
                turn = turns[p * k + j]
                row = judgement_row(turn, f"critic/{iteration}/{p}/{j}", f"critic/{iteration}/{p}")
                reward = judgement_reward(turn.text, self.outcome, winner, cfg.critic.agree_reward) if row else None
                if row is None or reward is None:
                    unscorable += 1  # no readable verdict: dropped, never rewarded 0
                    continue
                parsed += 1
                agreed += reward > 0
                group.append((row, reward))
            if len(group) < 2:
                continue
            r = torch.tensor([[g[1] for g in group]])  # (1, K')
            if cfg.algorithm.filter_zero_variance and bool(rl.zero_variance_groups(r)[0]):
                continue
            adv = rl.group_advantages(r, scale_by_std=cfg.scale_by_std)[0] * cfg.critic.loss_weight  # (K',)
            for (row, reward), a in zip(group, adv.tolist(), strict=True):
                rows.append(row)
                advantages.append(a)
                rewards.append(reward)
                baselines.append(float(r.mean()))
        stats = {m.CRITIC_TRAIN_SAMPLES: float(len(turns)), m.CRITIC_TRAIN_UNSCORABLE: float(unscorable),
                 m.CRITIC_TRAIN_ROWS: float(len(rows))}
        if parsed:
            stats[m.CRITIC_TRAIN_AGREEMENT] = agreed / parsed
        if not rows:
            return None, stats
        return make_batch(rows, self.sampler.pad_id, advantages=advantages, rewards=rewards, baselines=baselines), stats

    def label_verdicts(self, items: Sequence[tuple[Episode, Episode, Any]]) -> tuple[list[list[int]], list[LabelVerdict | None]]:
        """The prompt ids (ending with the verdict prefix) and the label verdict of each (A, B, ...) item about the
        outcome criterion; None where the prompt does not fit the model's context (counted by callers, never a verdict)."""
        return self._read_labels([LabelQuestion(a, b, self.outcome, self.sampler.rubric) for a, b, *_ in items])

    def read_label_questions(self, questions: Sequence[LabelQuestion]) -> list[LabelVerdict | None]:
        """The current model's label verdicts (the reader of the ``self_pairwise`` label critic)."""
        return self._read_labels(questions)[1]

    def _read_labels(self, questions: Sequence[LabelQuestion]) -> tuple[list[list[int]], list[LabelVerdict | None]]:
        if self.label_tokens is None:
            raise ValueError("label verdicts need critic.verdict: label")
        policy = self.sampler.policy
        prompts = []
        for q in questions:
            a, b = q.a, q.b
            messages = label_prompt(q.rubric, q.criterion, a.task.instruction,
                                    render_transcript(a, TRANSCRIPT_CHARS, include_opening=False),
                                    render_transcript(b, TRANSCRIPT_CHARS, include_opening=False),
                                    compact=self.config.critic.label_prompt == "compact")
            ids = policy.render(PolicyRequest(episode_id="critic", task_id=a.task.id, messages=messages, seed=0))
            prompts.append([*ids, *self.label_tokens.prefix])
        fits = [i for i, p in enumerate(prompts) if len(p) < policy.max_context]
        verdicts: list[LabelVerdict | None] = [None] * len(questions)
        if fits:
            lp = label_logprobs(self.sampler.model, [prompts[i] for i in fits], self.label_tokens, self.sampler.pad_id,
                                self.config.optim.micro_batch_size)
            for i, (a_lp, b_lp) in zip(fits, lp.tolist(), strict=True):
                verdicts[i] = LabelVerdict(logp_a=a_lp, logp_b=b_lp)
        return prompts, verdicts

    def label_batch(self, iteration: int, items: Sequence[tuple[Episode, Episode, str]]) -> tuple[Batch | None, dict[str, float]]:
        """Each verified pair in both orders; per prompt one group of its two label verdicts, rewarded without sampling."""
        cfg, tokens = self.config, self.label_tokens
        if tokens is None:
            raise ValueError("label_batch needs critic.verdict: label")
        asked: list[tuple[Episode, Episode, Label]] = []
        for a, b, w in items:
            win: Label = "A" if w == "A" else "B"
            asked += [(a, b, win), (b, a, swapped(win))]
        prompts, verdicts = self.label_verdicts(asked)
        # The group is the verdict's whole action space: the winner's label (reward agree_reward) and the other (0).
        # An order that does not fit counts as p = 0.5 (log-odds 0), so under "pair" its sibling order trains alone.
        p_win = torch.tensor([v.p(w) if v is not None else 0.5 for v, (_, _, w) in zip(verdicts, asked, strict=True)],
                             dtype=torch.float64)  # (N,): float64, so a sure verdict's 1 - p keeps its digits
        adv = label_advantages(p_win, cfg.critic.agree_reward, cfg.critic.label_advantage, cfg.scale_by_std) * cfg.critic.loss_weight  # (N, 2)
        rows: list[TokenRow] = []
        advantages, rewards, baselines = [], [], []
        for p, ((_, _, winner), ids, verdict) in enumerate(zip(asked, prompts, verdicts, strict=True)):
            if verdict is None:
                continue  # the prompt does not fit: counted unscorable below
            for label, reward, a in zip((winner, swapped(winner)), (cfg.critic.agree_reward, 0.0), adv[p].tolist(), strict=True):
                token, logp = (tokens.a, verdict.logp_a) if label == "A" else (tokens.b, verdict.logp_b)
                rows.append(label_row(ids, token, logp, f"critic/{iteration}/{p}/{label}", f"critic/{iteration}/{p}"))
                advantages.append(a)
                rewards.append(reward)
                baselines.append(cfg.critic.agree_reward * (float(p_win[p]) if cfg.critic.label_advantage != "constant" else 0.5))
        judged = [(v, w) for v, (_, _, w) in zip(verdicts, asked, strict=True) if v is not None]
        stats = {m.CRITIC_TRAIN_SAMPLES: float(len(asked)), m.CRITIC_TRAIN_UNSCORABLE: float(len(asked) - len(judged)),
                 m.CRITIC_TRAIN_ROWS: float(len(rows))}
        agreement = label_agreement([v for v, _ in judged], [w for _, w in judged])
        if agreement is not None:
            stats[m.CRITIC_TRAIN_AGREEMENT] = agreement
        if not rows:
            return None, stats
        return make_batch(rows, self.sampler.pad_id, advantages=advantages, rewards=rewards, baselines=baselines), stats
