"""The RL system with vLLM inference workers, end to end (``system.engine: vllm``; ``make test-vllm``).

A short GRPO run of ``SystemTrainer`` on local Ray: one inference worker that starts a real
vLLM server (``.venv-vllm``), the learner in the driver. After each update the worker holds the
next weights version; every sampled token in the rows carries the version it was sampled under,
and its behaviour log-prob (vLLM's raw log-prob) equals a fresh HF forward on that version's
weights within 1e-4, as the learner's own train-inference gap (``is/logprob_gap``) says too.
When the trainer closes, the vLLM server goes with its worker.
"""

from __future__ import annotations

import math
import time

import pytest

pytest.importorskip("ray")
torch = pytest.importorskip("torch")

from toolgym.trainers import metrics as m

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.usefixtures("vllm_tier")]

LOGPROB_TOL = 1e-4
ITERATIONS = 2
DIGITS = {
    "name": "digits", "env_ids": ["toolgym/unitconv-v0"],
    "criteria": [{"id": "digits", "description": "share of digits in what the policy wrote", "weight": 1,
                  "source": {"type": "critic", "critic": "digits"}}],
}


def digit_share(episode, criterion) -> float:
    """A reward with variance even for a random tiny model: the share of digits the policy wrote."""
    text = "".join(t.text for t in episode.turns)
    return sum(ch.isdigit() for ch in text) / max(1, len(text))


def worker_version(worker) -> int:
    """The weights version an inference worker answers with (an empty batch generates nothing)."""
    import ray

    version, results = ray.get(worker.generate.remote([]), timeout=60)
    assert results == []
    return int(version)


def sampled_gaps(model, rows, version: int) -> list[float]:
    """|behaviour - HF| log-prob of every sampled token in ``rows`` under ``model`` (which holds ``version``)."""
    from toolgym.trainers.system.staleness import VERSIONS_KEY

    gaps = []
    for row in rows:
        with torch.inference_mode():
            logits = model(torch.tensor([row.input_ids])).logits[0, :-1].float()  # (T-1, V)
        logp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(row.input_ids[1:])[:, None])[:, 0]  # (T-1,)
        for t in range(1, len(row.input_ids)):
            if row.loss_mask[t]:
                assert row.metadata[VERSIONS_KEY][t] == version  # sync mode: sampled under the current version
                gaps.append(abs(float(logp[t - 1]) - row.behaviour_logprobs[t]))
    return gaps


def group_members(pgid: int) -> list[int]:
    """Running processes of process group ``pgid`` (zombies waiting for their reaper have stopped)."""
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
        except OSError:  # ended while we looked
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@pytest.mark.parametrize("kind", ["qwen3", "kimi"])
def test_grpo_trains_through_vllm_inference_workers(request, kind):
    import ray

    request.getfixturevalue("ray_local")  # only once the tier is known to run: a skip starts no Ray

    from toolgym.rubrics import FunctionCritic, rubric_from_dict
    from toolgym.trainers.config import TrainConfig
    from toolgym.trainers.run import load_policy
    from toolgym.trainers.system.driver import SystemTrainer

    cfg = TrainConfig.from_dict({
        "model": {"tiny": kind}, "env": {"id": "toolgym/unitconv-v0"},
        "algorithm": {"group_size": 2, "filter_zero_variance": False, "importance": "truncated"},
        "optim": {"lr": 1e-3, "minibatch_size": 4, "micro_batch_size": 2},
        "rollout": {"tasks_per_iteration": 2, "max_new_tokens": 12},
        "run": {"iterations": ITERATIONS, "seed": 0, "torch_threads": 1, "tensorboard": False, "plots": False},
        "system": {"mode": "sync", "engine": "vllm", "inference_workers": 1, "learner_backend": "local"},
    })
    model, tokenizer = load_policy(cfg)
    t0 = time.monotonic()
    trainer = SystemTrainer(cfg, model, tokenizer, rubric=rubric_from_dict(DIGITS),
                            critics=[FunctionCritic("digits", digit_share)])
    started = time.monotonic() - t0
    worker = trainer.workers[0]
    # the server's supervisor, which leads the group of the server and its engine core
    group = ray.get(worker.__ray_call__.remote(lambda self: self.engine.server.process.pid))
    assert len(group_members(group)) >= 3
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rows, gaps = [], []
    try:
        for i in range(ITERATIONS):
            assert worker_version(worker) == trainer.version == i
            generating = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            rows.append(trainer.iteration())
            assert worker_version(worker) == trainer.weights.version == i + 1  # the update reached the worker
            reference = type(model)(model.config).eval()
            reference.load_state_dict(generating)
            scored = [row for group in trainer.last_collected.groups for s in group for row in s.rows]
            gaps += sampled_gaps(reference, scored, version=i)
    finally:
        trainer.close()
    print(f"{kind}: server start {started:.0f} s; worst |vLLM - HF| over {len(gaps)} sampled tokens {max(gaps):.2e}; "
          f"learner is/logprob_gap {[f'{r[m.IS_LOGPROB_GAP]:.1e}' for r in rows]}; "
          f"weight sync {[round(r[m.WEIGHT_SYNC_S], 2) for r in rows]} s; "
          f"iteration {[round(r[m.TIME_PREFIX + 'iteration_s'], 1) for r in rows]} s")
    assert gaps and max(gaps) < LOGPROB_TOL
    for row in rows:
        assert row[m.ROWS] > 0 and row[m.STEPS] >= 1 and row[m.WEIGHT_SYNC_S] > 0
        assert row[m.IS_LOGPROB_GAP] < LOGPROB_TOL  # the learner's own forward agrees with vLLM
        assert [k for k, v in row.items() if not math.isfinite(v)] == []
    assert any(not torch.equal(v, initial[k]) for k, v in trainer.model.state_dict().items())  # it trained
    deadline = time.monotonic() + 60  # the worker's server stops with it (see vllm_ext.supervise)
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert group_members(group) == [], "the vLLM server outlived its inference worker"
