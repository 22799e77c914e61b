"""``VLLMPolicy``: a toolgym policy that renders locally and samples on a vLLM server.

Prompts are rendered exactly as ``HFPolicy`` renders them (the same ``ChatRenderer``,
token-faithful across turns through ``prefix_token_ids``), and continued on the server by token
ids (``POST /v1/completions``): the turn's ``token_ids`` are the ids vLLM sampled and its
``logprobs`` vLLM's raw log-probs of them (temperature 1, full vocabulary — what the trainer
recomputes), each request with its own seed. Only tokenizer and config are loaded here; the
model lives in the server (``toolgym.policies.vllm_engine``).

It is also an inference engine for the Ray system (``generate_ids``, ``load_weights``,
``close``; ``VLLMEngine`` builds one from an ``EngineSpec``): ``load_weights`` writes the
learner's ``state_dict`` (under the checkpoint's tensor names) to a file and has the server
reload it, re-pack the MoE experts and drop its prefix cache.

Example:
    ``policy = VLLMPolicy.start(cached_tiny_model("qwen3"))`` then
    ``run_episodes("toolgym/unitconv-v0", policy, n=8)``; ``policy.close()`` stops the server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolgym.errors import ConfigError
from toolgym.policies.generation import SEED_MASK, Generated, GenerationJob
from toolgym.policies.hf_policy import HFPolicy, _overflow
from toolgym.policies.vllm_engine import VLLMServer, VLLMServerConfig
from toolgym.policy import PolicyError


@dataclass
class ModelCard:
    """What rendering needs from a model (``HFPolicy`` reads only these): config and generation config."""

    config: Any
    generation_config: Any


class VLLMPolicy(HFPolicy):
    """Batched sampling on a vLLM server, rendered locally.

    Args:
        server: The server (``VLLMServer.start`` or ``.attach``); closed with the policy only
            when it was started here.
        model_dir: The model folder the server serves (tokenizer, chat template and config).
        max_context: Longest prompt plus generation (default: the smaller of the model's
            ``max_position_embeddings`` and the server's ``max_model_len``).
        request_timeout_s: Deadline of one completion request.
        kwargs: ``HFPolicy`` rendering options (``chat_template_kwargs``, ``history_rewrite``).
    """

    def __init__(self, server: VLLMServer, model_dir: str | os.PathLike[str], *, max_context: int | None = None,
                 request_timeout_s: float = 600.0, **kwargs: Any):
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

        from toolgym.policies.hf_model import check_model_dir

        folder = check_model_dir(model_dir)
        config = AutoConfig.from_pretrained(folder)
        try:
            generation = GenerationConfig.from_pretrained(folder)
        except OSError:  # no generation_config.json: the tokenizer's eos alone ends turns
            generation = None
        if max_context is None:  # the server refuses a prompt plus max_tokens longer than its max_model_len
            model_len = int(config.max_position_embeddings)
            max_context = min(model_len, server.max_model_len() or model_len)
        super().__init__(ModelCard(config, generation), AutoTokenizer.from_pretrained(folder),
                         max_context=max_context, **kwargs)
        self.server = server
        self.model_dir = str(folder)
        self.request_timeout_s = request_timeout_s
        self.version = 0
        """The weights version the server holds (0: the folder's own)."""
        self.sync_seconds: list[float] = []
        """Wall time of each ``load_weights`` (file write + reload + re-pack + cache reset)."""
        self._dir = tempfile.mkdtemp(prefix="toolgym-vllm-weights-")
        self._skeleton: Any = None

    @classmethod
    def start(
        cls, model_dir: str | os.PathLike[str], *, server: VLLMServerConfig | None = None, **kwargs: Any
    ) -> VLLMPolicy:
        """Start a server for ``model_dir`` (``server`` options) and a policy on it."""
        config = server or VLLMServerConfig(model_dir=str(model_dir))
        started = VLLMServer.start(config)
        try:
            return cls(started, model_dir, **kwargs)
        except BaseException:
            started.stop()
            raise

    @classmethod
    def attach(cls, url: str, model_dir: str | os.PathLike[str], **kwargs: Any) -> VLLMPolicy:
        """A policy on a running server at ``url`` that serves ``model_dir``."""
        return cls(VLLMServer.attach(url), model_dir, **kwargs)

    # ------------------------------------------------------------------ generation seam

    async def generate_ids(self, jobs: Sequence[GenerationJob]) -> list[Generated | PolicyError]:
        """Continue tokenized prompts on the server, concurrently (vLLM batches them)."""
        import httpx

        async with httpx.AsyncClient(base_url=self.server.v1, timeout=self.request_timeout_s) as client:
            return list(await asyncio.gather(*(self._one(client, job) for job in jobs)))

    async def _one(self, client: Any, job: GenerationJob) -> Generated | PolicyError:
        room = self.max_context - len(job.prompt_ids)
        if room < 1:
            return _overflow(len(job.prompt_ids), self.max_context)
        s = job.sampling
        body: dict[str, Any] = {
            "model": self.server.model_name, "prompt": job.prompt_ids, "max_tokens": min(s.max_new_tokens, room),
            "temperature": s.temperature, "top_p": s.top_p, "seed": job.seed & SEED_MASK, "logprobs": 0,
            "return_token_ids": True, "stop_token_ids": sorted(self.end_ids), "skip_special_tokens": False,
            "include_stop_str_in_output": True,
        }
        if s.stop:
            body["stop"] = list(s.stop)
        try:
            response = await client.post("/completions", json=body)
        except Exception as exc:  # any transport failure fails this request, not the rollout
            message = f"{self.server.v1}/completions: {type(exc).__name__}: {exc}"
            return PolicyError(kind="endpoint_error", message=message[:500])
        if response.status_code != 200:
            return PolicyError(kind="endpoint_error",
                               message=f"{self.server.v1}/completions answered {response.status_code}: "
                                       f"{response.text[:300]}")
        return self._read(response.json())

    def _read(self, data: Any) -> Generated | PolicyError:
        from toolgym.policies.openai_schema import CompletionResponse

        try:
            choice = CompletionResponse.model_validate(data).choices[0]
        except Exception as exc:  # an unreadable answer is the server's fault
            return PolicyError(kind="bad_response", message=f"{self.server.v1}: unreadable completion: {exc}"[:500])
        ids = choice.token_ids
        logprobs = choice.logprobs.token_logprobs if choice.logprobs else []
        if not ids or len(ids) != len(logprobs) or any(x is None for x in logprobs):
            return PolicyError(kind="bad_response",
                               message=f"{self.server.v1} returned no token ids or log-probs for a completion")
        ended = ids[-1] in self.end_ids
        text = self._decode(ids[:-1] if ended else ids)
        finish = "stop" if ended or choice.finish_reason == "stop" else "length"
        return Generated(token_ids=list(ids), logprobs=[float(x) for x in logprobs if x is not None], text=text,
                         finish_reason=finish)

    # ------------------------------------------------------------------ weights

    async def load_weights(self, state: dict[str, Any], version: int) -> None:
        """Install a ``state_dict`` (checkpoint names, as an HF model's) as ``version``."""
        await asyncio.to_thread(self.load_state_dict, state, version)

    def load_state_dict(self, state: dict[str, Any], version: int) -> float:
        """Blocking ``load_weights``; returns the seconds the sync took (also in ``sync_seconds``)."""
        import torch

        t0 = time.perf_counter()
        path = Path(self._dir) / f"weights-{version}.pt"
        checkpoint = self.checkpoint_state(state)
        torch.save({k: v.detach().to("cpu").contiguous() for k, v in checkpoint.items()}, path)
        try:
            self.server.reload_weights(path)
        finally:
            path.unlink(missing_ok=True)
        self.version = version
        self.sync_seconds.append(time.perf_counter() - t0)
        return self.sync_seconds[-1]

    def checkpoint_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` under the checkpoint's names and layout, which vLLM's loader reads.

        transformers keeps MoE experts fused in memory (``experts.gate_up_proj``, one tensor per
        layer) but saves them per expert; this applies the same reversal ``save_pretrained``
        does, on a weightless (meta-device) copy of the architecture.
        """
        from transformers.core_model_loading import revert_weight_conversion

        checkpoint = dict(revert_weight_conversion(self.skeleton(), dict(state)))
        expected = self._checkpoint_names()
        missing, unknown = sorted(expected - set(checkpoint)), sorted(set(checkpoint) - expected)
        # Refused here: a reload with foreign names would leave the server half-loaded.
        if expected and (missing or unknown):
            raise ConfigError(f"weights for {self.model_dir!r} do not match its checkpoint: missing {missing[:3]}, "
                              f"unknown {unknown[:3]} ({len(missing)} and {len(unknown)}); pass the state_dict() "
                              "of the model this server serves")
        return checkpoint

    def skeleton(self) -> Any:
        """A weightless (meta-device) copy of the architecture, built on first use (seconds: model code imports)."""
        if self._skeleton is None:
            import torch
            from transformers import AutoModelForCausalLM

            with torch.device("meta"):
                self._skeleton = AutoModelForCausalLM.from_config(self.model.config)
        return self._skeleton

    def _checkpoint_names(self) -> set[str]:
        """Tensor names in the model folder's safetensors files (read from their headers)."""
        from safetensors import safe_open

        names: set[str] = set()
        for file in sorted(Path(self.model_dir).glob("*.safetensors")):
            with safe_open(str(file), "pt") as handle:
                names.update(handle.keys())
        return names

    def load_weights_from(self, path: str | os.PathLike[str], version: int) -> float:
        """Reload from a model folder or weights file the server can read; returns seconds."""
        t0 = time.perf_counter()
        self.server.reload_weights(path)
        self.version = version
        self.sync_seconds.append(time.perf_counter() - t0)
        return self.sync_seconds[-1]

    def close(self) -> None:
        """Stop the worker thread and a server this policy started; remove its weight files."""
        super().close()
        self.server.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class VLLMEngine(VLLMPolicy):
    """A ``VLLMPolicy`` built from an ``EngineSpec`` of ``toolgym.trainers.system.inference``.

    Attaches to ``spec.url`` when it is set (that server must serve ``spec.model_dir``), otherwise
    starts a server for ``spec.model_dir`` in ``spec.dtype``; the engine kind to register is
    ``ENGINES["vllm"] = VLLMEngine``.
    """

    def __init__(self, spec: Any):
        timeout = float(getattr(spec, "timeout_s", 600.0))
        if getattr(spec, "url", ""):
            server = VLLMServer.attach(spec.url)
        else:
            server = VLLMServer.start(VLLMServerConfig(model_dir=str(spec.model_dir), dtype=spec.dtype))
        try:
            super().__init__(server, spec.model_dir, request_timeout_s=timeout)
            self.skeleton()  # now, with the start-up, rather than in the first weight sync (4-6 s of it measured)
        except BaseException:
            server.stop()
            raise
