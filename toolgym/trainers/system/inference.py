"""Inference workers: each serves the current policy from one engine, tagged with its weights version.

An **engine** continues tokenized prompts (``generate_ids``, the same seam as
``HFPolicy.generate_ids``) and takes new weights (``load_weights``). Two ship here:

* ``HFEngine``: the model in the worker's own process (transformers, toolgym's batched decoder);
* ``OpenAIEngine``: an OpenAI-compatible server it is pointed to (``toolgym serve``; any server
  returning token ids and log-probs for token-id prompts on ``/v1/completions``, as vLLM does).
  Weights reach ``toolgym serve`` through its ``POST /v1/weights`` endpoint. A vLLM adapter
  subclasses it and overrides ``load_weights`` with vLLM's own weight-update call.

``InferenceWorker`` is the Ray actor around one engine: ``generate`` answers with the version
that produced every result, ``load_weights`` hands it a new version. Weights that arrive while a
batch decodes wait in a pending slot and are installed between batches (before the next one
starts), so the learner's publish returns at once and never waits for a running batch; a batch
never sees two versions.

``WorkerPolicy`` is the driver's side: an ``HFPolicy`` whose ``generate_ids`` seam sends the jobs
to the workers, so prompts are rendered exactly as the in-process trainer renders them. A
worker that dies mid-call has its jobs re-sent to a live one: each job carries its own seed,
so the tokens are the ones the dead worker would have sampled (counted in ``retries``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from toolgym.errors import ConfigError
from toolgym.policies.generation import Generated, GenerationJob
from toolgym.policies.hf_policy import HFPolicy
from toolgym.policies.vllm_policy import VLLMEngine
from toolgym.policy import PolicyError, PolicyRequest, PolicyTurn
from toolgym.trainers.system.staleness import VersionLog


class InferenceEngine(Protocol):
    """What an inference worker needs from an engine."""

    async def generate_ids(self, jobs: Sequence[GenerationJob]) -> list[Generated | PolicyError]:
        """Continue each tokenized prompt; failures come back as ``PolicyError``s, in order."""
        ...

    async def load_weights(self, state: dict[str, Any], version: int) -> None:
        """Install new weights (a ``state_dict``); the next ``generate_ids`` uses them."""
        ...

    def close(self) -> None:
        """Release the engine."""
        ...


class EngineSpec(BaseModel):
    """How a worker builds its engine (plain data: it travels to the worker's process)."""

    model_config = ConfigDict(extra="forbid")

    kind: str = "hf"
    """"hf", "openai" or "vllm"."""
    model_dir: str = ""
    """hf: the model folder to load."""
    dtype: str = "float32"
    device: str = "cpu"
    max_batch_size: int = Field(default=64, ge=1)
    """hf: most sequences decoded together (the in-process trainer uses 64)."""
    torch_threads: int | None = None
    """``torch.set_num_threads`` in the worker (None: torch's default)."""
    url: str = ""
    """openai: the server's base URL, e.g. ``http://127.0.0.1:8000/v1``."""
    timeout_s: float = Field(default=120.0, gt=0)
    """openai: deadline of one request."""
    record_routing: bool = False
    """Return each sampled token's routed experts per MoE layer (routing replay). hf: recorded by the
    decoder; openai: read from the server's ``routed_experts`` (a ``toolgym serve`` whose policy records
    routing); vllm: not available (the config refuses it)."""


class HFEngine:
    """A transformers model in this process, decoded by ``HFPolicy.generate_ids``."""

    def __init__(self, spec: EngineSpec):
        self.policy = HFPolicy.from_pretrained(spec.model_dir, device=spec.device, dtype=spec.dtype, max_batch_size=spec.max_batch_size,
                                               record_routing=spec.record_routing)
        self.policy.model.eval()

    async def generate_ids(self, jobs: Sequence[GenerationJob]) -> list[Generated | PolicyError]:
        return await self.policy.generate_ids(jobs)

    async def load_weights(self, state: dict[str, Any], version: int) -> None:
        # On the policy's own thread: a load never lands in the middle of a decode.
        await asyncio.get_running_loop().run_in_executor(self.policy.executor, self.policy.model.load_state_dict, state)

    def close(self) -> None:
        self.policy.close()


class OpenAIEngine:
    """An OpenAI-compatible server answering token-id prompts with token ids and log-probs."""

    def __init__(self, spec: EngineSpec):
        self.url, self.timeout_s = spec.url.rstrip("/"), spec.timeout_s
        self.record_routing = spec.record_routing
        self._dir = tempfile.mkdtemp(prefix="toolgym-weights-")

    async def generate_ids(self, jobs: Sequence[GenerationJob]) -> list[Generated | PolicyError]:
        import httpx

        async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout_s) as client:
            return list(await asyncio.gather(*(self._one(client, job) for job in jobs)))

    async def _one(self, client: Any, job: GenerationJob) -> Generated | PolicyError:
        s = job.sampling
        body = {"prompt": job.prompt_ids, "max_tokens": s.max_new_tokens, "temperature": s.temperature, "top_p": s.top_p,
                "seed": job.seed, "logprobs": 0, "return_token_ids": True, "return_tokens_as_token_ids": True}
        if s.stop:
            body["stop"] = list(s.stop)
        try:
            response = await client.post("/completions", json=body)
        except Exception as exc:  # any transport failure is this request's endpoint error
            return PolicyError(kind="endpoint_error", message=f"{self.url}/completions: {type(exc).__name__}: {exc}"[:500])
        if response.status_code != 200:
            return PolicyError(kind="endpoint_error", message=f"{self.url}/completions answered {response.status_code}: {response.text[:300]}")
        return read_completion(response.json(), self.url, routing=self.record_routing)

    async def load_weights(self, state: dict[str, Any], version: int) -> None:
        import httpx
        import torch

        # Through the filesystem (as prime-rl does): the server and the worker share this machine.
        path = os.path.join(self._dir, f"weights-{version}.pt")
        await asyncio.to_thread(torch.save, state, path)
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            response = await client.post(weights_url(self.url), json={"path": path, "version": version})
        os.unlink(path)
        if response.status_code != 200:
            raise RuntimeError(f"{weights_url(self.url)} refused the weights: {response.status_code} {response.text[:300]}")

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def weights_url(url: str) -> str:
    """The weight-update endpoint next to a server's ``/v1`` base URL."""
    return url.rstrip("/") + "/weights"


def read_completion(data: Any, url: str, *, routing: bool = False) -> Generated | PolicyError:
    """A ``Generated`` from a ``/v1/completions`` answer, or why it cannot be trained on.

    With ``routing`` the answer must carry ``routed_experts`` (one record per token id), as a
    ``toolgym serve`` whose policy records routing returns.
    """
    from toolgym.policies.openai_schema import CompletionResponse

    try:
        choice = CompletionResponse.model_validate(data).choices[0]
    except Exception as exc:  # an unreadable answer is the endpoint's fault
        return PolicyError(kind="bad_response", message=f"{url}: unreadable completion: {exc}"[:500])
    logprobs = [float(x) for x in choice.logprobs.token_logprobs if x is not None] if choice.logprobs else []
    ids = choice.token_ids
    if ids is None or len(ids) != len(logprobs):
        return PolicyError(kind="bad_response", message=f"{url} returned no token ids or log-probs (needs return_token_ids and logprobs)")
    finish = "length" if choice.finish_reason == "length" else "stop"
    routed = getattr(choice, "routed_experts", None) if routing else None  # toolgym serve's extension field
    if routing and (not isinstance(routed, list) or len(routed) != len(ids)):
        return PolicyError(kind="bad_response", message=f"{url} returned no routed_experts for its {len(ids)} token ids "
                           "(routing replay needs a server whose policy records routing)")
    return Generated(token_ids=list(ids), logprobs=logprobs, text=choice.text, finish_reason=finish, routed_experts=routed)


def check_engine_url(url: str, field: str, timeout_s: float = 5.0, *, routing: bool = False) -> None:
    """Refuse, before any work, an engine URL that does not answer or returns no token ids (or, for routing replay, no routes)."""
    import httpx

    fix = "start one with `toolgym serve MODEL_DIR --port 8000` and use http://127.0.0.1:8000/v1"
    body = {"prompt": [1], "max_tokens": 1, "temperature": 0.0, "logprobs": 0, "return_token_ids": True,
            "return_tokens_as_token_ids": True}
    try:
        response = httpx.post(url.rstrip("/") + "/completions", json=body, timeout=timeout_s)
    except Exception as exc:  # connection refused, DNS, timeout: all mean "no engine there"
        raise ConfigError(f"{field} {url!r} does not answer ({type(exc).__name__}: {exc}); {fix}") from None
    if response.status_code != 200:
        raise ConfigError(f"{field} {url!r} answered {response.status_code} to a token-id completion; {fix}")
    result = read_completion(response.json(), url)
    if isinstance(result, PolicyError):
        raise ConfigError(f"{field} {url!r}: {result.message}; use toolgym serve or vLLM, which return both")
    if routing and isinstance(read_completion(response.json(), url, routing=True), PolicyError):
        raise ConfigError(f"algorithm.routing_replay: {field} {url!r} returns no routed_experts, so its tokens cannot be "
                          "replayed; serve a policy that records routing (toolgym.policies.serve.serve(HFPolicy(..., "
                          "record_routing=True))), use system.engine: hf, or set algorithm.routing_replay: false")


ENGINES: dict[str, type[Any]] = {"hf": HFEngine, "openai": OpenAIEngine, "vllm": VLLMEngine}
"""Engine kinds by ``EngineSpec.kind``."""


class InferenceWorker:
    """One engine serving the current policy; a Ray actor (``ray.remote(InferenceWorker)``)."""

    def __init__(self, spec: EngineSpec):
        if spec.torch_threads:
            import torch

            torch.set_num_threads(spec.torch_threads)
        if spec.kind not in ENGINES:
            raise ConfigError(f"engine kind must be one of {sorted(ENGINES)}, got {spec.kind!r}")
        self.engine = ENGINES[spec.kind](spec)
        self.version = 0
        """The version the engine holds (installed)."""
        self.deferred = 0
        """Loads that arrived during a batch and were installed after it (publishes that did not wait)."""
        self._pending: tuple[dict[str, Any], int] | None = None
        self._failed: Exception | None = None
        self._lock = asyncio.Lock()  # held by a batch or an install: the engine does one thing at a time

    async def ready(self) -> int:
        """The worker's process id, once the engine is built."""
        return os.getpid()

    async def generate(self, jobs: Sequence[GenerationJob]) -> tuple[int, list[Generated | PolicyError]]:
        """``(version, results)``: the weights version that produced every result."""
        async with self._lock:
            await self._install_pending()  # weights that arrived during the previous batch
            version, results = self.version, await self.engine.generate_ids(jobs)
        if self._pending is not None:  # arrived during this batch: install now, while the caller reads the results
            asyncio.ensure_future(self._install(background=True))
        return version, results

    async def load_weights(self, state: dict[str, Any], version: int) -> float:
        """Hand the worker ``state`` as ``version``; returns the seconds the caller waited.

        With the engine idle the weights are installed before this returns. During a batch they
        wait in the pending slot (a newer publish replaces an older one) and are installed before
        the next batch: the caller does not wait for the running decode.
        """
        t0 = time.perf_counter()
        self._pending = (state, version)
        if self._lock.locked():
            self.deferred += 1
            return time.perf_counter() - t0
        await self._install()
        return time.perf_counter() - t0

    async def held_version(self) -> int:
        """The installed version once pending weights are in (what the next batch will use)."""
        await self._install()
        return self.version

    async def _install(self, *, background: bool = False) -> None:
        async with self._lock:
            try:
                await self._install_pending()
            except Exception as exc:  # nobody awaits a background install: the next call reports it
                if not background:
                    raise
                self._failed = exc

    async def _install_pending(self) -> None:
        """Load the pending weights, if any (the caller holds the lock); raise a failed background load."""
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise RuntimeError(f"loading weights between batches failed: {type(failed).__name__}: {failed}") from failed
        while self._pending is not None:
            state, version = self._pending
            self._pending = None
            await self.engine.load_weights(state, version)
            self.version = version


class WorkerPolicy(HFPolicy):
    """The driver's policy: renders like ``HFPolicy``, generates on inference workers, logs versions.

    Args:
        workers: Ray actor handles of ``InferenceWorker``s.
        model: The model (only its config and end-of-turn ids are read: rendering limits).
        tokenizer: Its tokenizer.
        versions: Where the version of every answered request is recorded.
        kwargs: ``HFPolicy`` options (``chat_template_kwargs``...).
    """

    def __init__(self, workers: Sequence[Any], model: Any, tokenizer: Any, *, versions: VersionLog | None = None, **kwargs: Any):
        super().__init__(model, tokenizer, **kwargs)
        self.workers = list(workers)
        self.dead: set[int] = set()
        self.versions = versions if versions is not None else VersionLog()
        self.retries = 0
        """Jobs re-sent to another worker after theirs died."""

    async def generate(self, requests: Sequence[PolicyRequest]) -> list[PolicyTurn]:
        """One turn per request (as ``HFPolicy``), with each answered request's version logged."""
        turns: list[PolicyTurn | None] = [None] * len(requests)
        jobs: dict[int, GenerationJob] = {}
        for i, request in enumerate(requests):
            prepared = self._prepare(request)
            if isinstance(prepared, PolicyTurn):
                turns[i] = prepared
            else:
                jobs[i] = prepared
        answers = await self.dispatch(list(jobs.values()))
        for i, (version, result) in zip(jobs, answers, strict=True):
            job = jobs[i]
            if isinstance(result, PolicyError):
                turns[i] = PolicyTurn(prompt_token_ids=job.prompt_ids, finish_reason="error", error=result)
                continue
            self.versions.record(requests[i].episode_id, len(requests[i].messages), version)
            turns[i] = PolicyTurn(text=result.text, prompt_token_ids=job.prompt_ids, token_ids=result.token_ids,
                                  logprobs=result.logprobs, finish_reason=result.finish_reason,
                                  routed_experts=result.routed_experts)
        return [t for t in turns if t is not None]

    async def generate_ids(self, jobs: Sequence[GenerationJob]) -> list[Generated | PolicyError]:
        """The seam ``HFPolicy`` generates through, answered by the workers."""
        return [result for _, result in await self.dispatch(jobs)]

    async def dispatch(self, jobs: Sequence[GenerationJob]) -> list[tuple[int, Generated | PolicyError]]:
        """Split ``jobs`` over the live workers; re-send a dead worker's share to the others."""
        out: list[tuple[int, Generated | PolicyError] | None] = [None] * len(jobs)
        todo = list(range(len(jobs)))
        while todo:
            live = [w for w in range(len(self.workers)) if w not in self.dead]
            if not live:
                error = PolicyError(kind="endpoint_error", message="every inference worker died")
                for i in todo:
                    out[i] = (-1, error)
                break
            shares = [todo[k :: len(live)] for k in range(len(live))]
            calls = [self._call(w, [jobs[i] for i in share]) for w, share in zip(live, shares, strict=True) if share]
            answers = await asyncio.gather(*calls)
            todo = []
            for share, answer in zip([s for s in shares if s], answers, strict=True):
                if answer is None:  # that worker died: its jobs go again, to the others
                    todo += share
                    self.retries += len(share)
                    continue
                version, results = answer
                for i, result in zip(share, results, strict=True):
                    out[i] = (version, result)
        return [o for o in out if o is not None]

    async def _call(self, worker: int, jobs: list[GenerationJob]) -> tuple[int, list[Generated | PolicyError]] | None:
        from ray.exceptions import RayActorError

        try:
            return await asyncio.wrap_future(self.workers[worker].generate.remote(jobs).future())
        except RayActorError:
            self.dead.add(worker)
            return None
