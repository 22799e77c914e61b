"""A weight publish never waits for a running decode batch, and every token keeps the version that sampled it."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolgym.policies.generation import Generated, GenerationJob
from toolgym.policy import SamplingParams
from toolgym.trainers.system.inference import ENGINES, EngineSpec, InferenceWorker


class StepEngine:
    """A fake engine whose batch decodes for ``steps`` event-loop turns and returns the weights it used per token."""

    def __init__(self, spec: EngineSpec):
        self.weights = 0
        self.loads: list[int] = []

    async def generate_ids(self, jobs):
        out = []
        for job in jobs:
            used = []
            for _ in range(job.sampling.max_new_tokens):
                used.append(self.weights)
                await asyncio.sleep(0)  # a decode step: other calls (loads) may arrive now
            out.append(Generated(token_ids=used, logprobs=[0.0] * len(used), text="", finish_reason="length"))
        return out

    async def load_weights(self, state, version):
        await asyncio.sleep(0)
        self.weights = state["w"]
        self.loads.append(version)

    def close(self) -> None:
        pass


@pytest.fixture
def step_engine(monkeypatch):
    monkeypatch.setitem(ENGINES, "step", StepEngine)
    return EngineSpec(kind="step")


def job(steps: int) -> GenerationJob:
    return GenerationJob(prompt_ids=[1], seed=0, sampling=SamplingParams(max_new_tokens=steps))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # the fixture only registers the engine
@given(st.lists(st.tuples(st.sampled_from(["generate", "publish"]), st.integers(0, 6), st.integers(1, 5)), min_size=1, max_size=12))
def test_any_interleaving_of_batches_and_publishes_keeps_versions_exact(step_engine, plan):
    """Batches and publishes start at random event-loop turns. Every token was sampled by the weights of the version
    its batch answers with; a publish during a batch returns before installing; the newest publish is installed
    before any later batch, and versions only grow."""
    worker = InferenceWorker(step_engine)
    published: list[tuple[bool, int, int]] = []  # (engine busy, installed version on return, published version)

    async def publish() -> None:
        v = len(published) + 1
        busy = worker._lock.locked()
        published.append((busy, -1, v))
        await worker.load_weights({"w": v}, v)
        published[v - 1] = (busy, worker.version, v)

    async def later(delay: int, make):
        for _ in range(delay):
            await asyncio.sleep(0)
        return await make()

    async def run():
        calls = [later(delay, (lambda size=size: worker.generate([job(size)])) if kind == "generate" else publish)
                 for kind, delay, size in plan]
        results = await asyncio.gather(*calls)
        return [r for r in results if r is not None], await worker.held_version()

    answers, held = asyncio.run(run())
    for version, (result,) in answers:
        assert result.token_ids == [version] * len(result.token_ids)  # one version per batch: the one that sampled
    for busy, installed, v in published:
        assert installed < v if busy else installed >= v  # busy: returned at once, the install comes between batches
    assert held == len(published)  # the newest publish is what the next batch uses
    assert worker.engine.loads == sorted(worker.engine.loads)
    assert worker.deferred == sum(busy for busy, _, _ in published)


def test_a_publish_during_a_real_decode_returns_at_once_and_the_next_batch_samples_the_new_weights():
    """The tiny Kimi MoE in an HF engine: a publish lands while a 3-job batch decodes. It returns before the batch
    ends; that batch answers version 0 with log-probs of the old weights, the next version 1 with the new ones."""
    torch = pytest.importorskip("torch")
    from toolgym.policies.models import cached_tiny_model
    from toolgym.trainers.rl import token_logprobs

    worker = InferenceWorker(EngineSpec(model_dir=str(cached_tiny_model("kimi")), torch_threads=1))
    model = worker.engine.policy.model
    old = {k: v.clone() for k, v in model.state_dict().items()}
    new = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in old.items()}
    jobs = [GenerationJob(prompt_ids=[5, 9, 13, 2 + i], seed=i, sampling=SamplingParams(max_new_tokens=24, temperature=1.0))
            for i in range(3)]

    async def run():
        running = asyncio.ensure_future(worker.generate(jobs))
        while not worker._lock.locked():
            await asyncio.sleep(0.001)
        waited = await worker.load_weights(new, 1)
        in_flight = not running.done()
        return waited, in_flight, await running, await worker.generate(jobs)

    waited, in_flight, (v0, first), (v1, second) = asyncio.run(run())
    assert in_flight and waited < 0.05 and worker.deferred == 1
    assert (v0, v1) == (0, 1)

    def worst_gap(results, state) -> float:
        model.load_state_dict(state)
        gap = 0.0
        for j, r in zip(jobs, results, strict=True):
            ids = torch.tensor([j.prompt_ids + r.token_ids])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[:, len(j.prompt_ids) - 1 : -1]
            fresh = token_logprobs(logits, ids[:, len(j.prompt_ids) :])[0]
            gap = max(gap, float((fresh - torch.tensor(r.logprobs)).abs().max()))
        return gap

    assert worst_gap(first, old) < 1e-4 and worst_gap(second, new) < 1e-4
    assert worst_gap(first, new) > 1e-3  # the versions are distinguishable: the check above can fail
    worker.engine.close()
