"""Continuous batching in ``toolgym serve``: requests join and leave between decode steps.

A short request must not wait behind a long one, and a request's tokens must be the ones it
gets alone (same seed), whatever joins or leaves the batch around it.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")
pytest.importorskip("fastapi")

from toolgym.policies.generation import GenerationJob
from toolgym.policies.hf_policy import HFPolicy
from toolgym.policies.models import cached_tiny_model
from toolgym.policies.scheduler import Scheduler
from toolgym.policies.serve import serve_in_thread
from toolgym.policy import PolicyError, SamplingParams


@pytest.fixture(scope="module")
def local():
    return HFPolicy.from_pretrained(cached_tiny_model("kimi"))


@pytest.fixture(scope="module")
def endless(local):
    """The same model with no end-of-turn id: every request runs exactly its max_tokens."""
    policy = HFPolicy(local.model, local.tokenizer)
    policy.end_ids = set()
    yield policy
    policy.close()


def job(policy: HFPolicy, words: int, seed: int, max_tokens: int, temperature: float = 1.0, top_p: float = 1.0) -> GenerationJob:
    ids = policy.tokenizer.encode("convert three miles to kilometres " * words, add_special_tokens=False)
    sampling = SamplingParams(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p)
    return GenerationJob(prompt_ids=ids, seed=seed, sampling=sampling)


async def until(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


async def short_behind_long(policy: HFPolicy, long_tokens: int, *, continuous: bool = True) -> tuple[int, bool]:
    """Steps a 4-token request takes when it arrives while a ``long_tokens`` request decodes,
    and whether the long one was still running when the short one was answered."""
    scheduler = Scheduler(policy, max_batch=8, wait_s=0, continuous=continuous)
    runner = asyncio.create_task(scheduler.run())
    try:
        long = asyncio.create_task(scheduler.submit(job(policy, 20, seed=1, max_tokens=long_tokens)))
        await until(lambda: scheduler.steps >= 3)
        before = scheduler.steps
        short = await scheduler.submit(job(policy, 1, seed=2, max_tokens=4))
        taken, long_running = scheduler.steps - before, not long.done()
        assert not isinstance(short, PolicyError) and len(short.token_ids) == 4
        long.cancel()  # frees its row at the next step: the test never pays for the long tail
        await until(lambda: scheduler.running == 0)
        return taken, long_running
    finally:
        runner.cancel()


def test_a_short_request_does_not_wait_for_a_long_one(endless):
    # Latency is counted in decode steps, not seconds: robust on a loaded machine. The short request
    # is admitted at the next step and answered 4 steps later, whether the long one wants 200 or 800.
    taken_200, running_200 = asyncio.run(short_behind_long(endless, 200))
    taken_800, running_800 = asyncio.run(short_behind_long(endless, 800))
    assert running_200 and running_800  # answered while the long request was still decoding
    assert taken_200 <= 5 and taken_800 <= 5


def test_static_batching_makes_the_short_request_wait(endless):
    # The switch the benchmark compares against: the short request waits for the whole long one.
    taken, long_running = asyncio.run(short_behind_long(endless, 40, continuous=False))
    assert not long_running and taken >= 40 - 3


def test_tokens_under_continuous_batching_equal_the_tokens_alone(local):
    # Requests of different prompt lengths, budgets and sampling settings arrive at different steps;
    # long prompts leave before short ones, so the cache is both left-padded and trimmed on the way.
    arrivals = [
        (0, job(local, 9, 11, 6, 1.0)), (0, job(local, 2, 12, 14, 0.7, 0.9)), (2, job(local, 14, 13, 3, 0.0)),
        (3, job(local, 1, 14, 12, 1.0, 0.8)), (5, job(local, 6, 15, 9, 1.3)), (9, job(local, 20, 16, 2, 1.0)),
    ]
    alone = [asyncio.run(local.generate_ids([j]))[0] for _, j in arrivals]

    batched = asyncio.run(run_arrivals(local, arrivals, max_batch=4))
    for a, b in zip(alone, batched, strict=True):
        assert (b.token_ids, b.text, b.finish_reason) == (a.token_ids, a.text, a.finish_reason)
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4


async def run_arrivals(policy: HFPolicy, arrivals: list[tuple[int, GenerationJob]], max_batch: int) -> list:
    """Submit each job once the scheduler has run ``step`` decode steps; the results in order."""
    scheduler = Scheduler(policy, max_batch=max_batch, wait_s=0)
    runner = asyncio.create_task(scheduler.run())
    tasks = []
    for step, j in arrivals:
        await until(lambda step=step: scheduler.steps >= step or (scheduler.running == 0 and scheduler.waiting == 0))
        tasks.append(asyncio.create_task(scheduler.submit(j)))
        await asyncio.sleep(0)
    results = await asyncio.gather(*tasks)
    runner.cancel()
    return results


arrival = st.tuples(
    st.integers(min_value=0, max_value=6),  # decode step at which the request arrives
    st.integers(min_value=1, max_value=16),  # prompt length, in repeats of a phrase
    st.integers(min_value=1, max_value=10),  # max_tokens
    st.sampled_from([0.0, 0.7, 1.0, 1.3]),
    st.sampled_from([1.0, 0.9, 0.5]),
)


@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=st.lists(arrival, min_size=2, max_size=5), max_batch=st.integers(min_value=1, max_value=4))
def test_generated_arrival_plans_give_the_tokens_each_request_gets_alone(local, plan, max_batch):
    arrivals = [(step, job(local, words, 100 + i, n, t, p)) for i, (step, words, n, t, p) in enumerate(sorted(plan))]
    alone = [asyncio.run(local.generate_ids([j]))[0] for _, j in arrivals]
    batched = asyncio.run(run_arrivals(local, arrivals, max_batch))
    assert [(b.token_ids, b.finish_reason) for b in batched] == [(a.token_ids, a.finish_reason) for a in alone]


def test_a_failing_step_fails_the_running_requests_and_the_server_goes_on(local):
    async def scenario():
        scheduler = Scheduler(local, max_batch=4, wait_s=0)
        runner = asyncio.create_task(scheduler.run())
        real = scheduler.engine.step
        scheduler.engine.step = lambda admit, drop: (_ for _ in ()).throw(RuntimeError("device lost"))  # type: ignore[method-assign]
        failed = await scheduler.submit(job(local, 1, 1, 3))
        scheduler.engine.step = real  # type: ignore[method-assign]
        ok = await scheduler.submit(job(local, 1, 1, 3))
        runner.cancel()
        return failed, ok

    failed, ok = asyncio.run(scenario())
    assert isinstance(failed, PolicyError) and failed.kind == "model_error" and "device lost" in failed.message
    assert not isinstance(ok, PolicyError) and len(ok.token_ids) <= 3


def test_over_http_a_short_request_finishes_while_a_long_one_runs(endless):
    body = {"prompt": "convert three miles " * 10, "seed": 1}
    with serve_in_thread(endless, max_batch=8, wait_ms=0) as url, httpx.Client(base_url=url, timeout=120) as client:
        answers: dict[str, dict] = {}
        long = threading.Thread(target=lambda: answers.update(long=client.post("/v1/completions", json={**body, "max_tokens": 120}).json()))
        long.start()
        deadline = time.monotonic() + 60
        while client.get("/health").json()["steps"] < 3:
            assert time.monotonic() < deadline, "the long request never started"
            time.sleep(0.005)
        short = client.post("/v1/completions", json={**body, "max_tokens": 4, "seed": 2}).json()
        still_running = client.get("/health").json()["running"] == 1
        long.join(timeout=120)
    assert short["usage"]["completion_tokens"] == 4 and still_running
    assert answers["long"]["usage"]["completion_tokens"] == 120


def test_a_client_that_hangs_up_frees_its_row(endless):
    # OpenAIPolicy retries after its timeout: the abandoned request must not keep decoding for nobody.
    with serve_in_thread(endless, max_batch=8, wait_ms=0) as url, httpx.Client(base_url=url, timeout=60) as client:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/completions", json={"prompt": "three miles", "max_tokens": 3000, "seed": 1}, timeout=0.5)
        deadline = time.monotonic() + 30
        while client.get("/health").json()["running"]:
            assert time.monotonic() < deadline, "the abandoned request is still decoding"
            time.sleep(0.02)
        assert client.get("/health").json()["steps"] < 3000


def test_stopping_the_scheduler_answers_every_job(endless):
    async def scenario():
        scheduler = Scheduler(endless, max_batch=1, wait_s=0)
        runner = asyncio.create_task(scheduler.run())
        jobs = [asyncio.create_task(scheduler.submit(job(endless, 1, seed, 500))) for seed in range(2)]
        await until(lambda: scheduler.steps >= 2)
        runner.cancel()  # one job running, one waiting
        return await asyncio.wait_for(asyncio.gather(*jobs), 30)

    results = asyncio.run(scenario())
    assert all(isinstance(r, PolicyError) and "stopped" in r.message for r in results)
