"""Bad system configs fail before any work, naming the field and the fix; engines are checked for token ids."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.errors import ConfigError
from toolgym.trainers.config import SystemSection, TrainConfig
from toolgym.trainers.system.cluster import check_placement, role_demands


@pytest.mark.parametrize(("system", "optim", "expected"), [
    ({"max_staleness": -1}, {}, "system.max_staleness must be >= 0"),
    ({"mode": "sync", "max_staleness": 1}, {}, "needs system.mode: async"),
    ({"mode": "sync", "learners": 3}, {"minibatch_size": 8, "micro_batch_size": 4}, "system.learners (3) must divide optim.minibatch_size"),
    ({"mode": "sync", "learners": 2}, {"minibatch_size": 8, "micro_batch_size": 8}, "whole micro-batches"),
    ({"mode": "sync", "learners": 2, "learner_backend": "local"}, {"minibatch_size": 8, "micro_batch_size": 4}, "learner_backend: local runs one learner"),
    ({"mode": "sync", "engine": "openai"}, {}, "one URL per inference worker"),
    ({"mode": "sync", "resources": {"gpu_node": {"x": 1}}}, {}, "unknown role"),
    ({"partial_turn_budget": 2}, {}, "partial_turn_budget (partial rollouts) needs system.mode: async"),
])
def test_contradictions_name_the_field_and_the_fix(system, optim, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig.from_dict({"system": system, "optim": optim})


def test_good_system_configs_validate():
    cfg = TrainConfig.from_dict({"system": {"mode": "async", "max_staleness": 2, "learners": 2, "partial_turn_budget": 3},
                                 "optim": {"minibatch_size": 8, "micro_batch_size": 4}})
    assert cfg.system.learners == 2
    # Where roles run is not part of what a run computes: a checkpoint resumes on another cluster.
    moved = cfg.model_copy(update={"system": cfg.system.model_copy(update={"address": "10.0.0.1:6379", "env_actors": 8})})
    assert moved.fingerprint() == cfg.fingerprint()
    assert cfg.model_copy(update={"system": cfg.system.model_copy(update={"max_staleness": 1})}).fingerprint() != cfg.fingerprint()


def test_more_cpus_than_the_cluster_has_is_refused_with_the_fields_to_lower():
    s = SystemSection(mode="sync", pool="ray", env_actors=4, env_actor_cpus=0.5, inference_workers=2, inference_cpus=1.0)
    assert role_demands(s)["env"]["CPU"] == 2.0 and role_demands(s)["learner"]["CPU"] == 0.5
    with pytest.raises(ConfigError, match=r"ask for 4.5 CPU \(env 2, inference 2, learner 0.5\) but the Ray cluster has 2") as err:
        check_placement(s, {"CPU": 2.0})
    assert "system.env_actor_cpus / inference_cpus / learner_cpus" in str(err.value)
    with pytest.raises(ConfigError, match="GPU"):
        check_placement(SystemSection(mode="sync", learner_gpus=1.0), {"CPU": 8.0})
    check_placement(SystemSection(mode="sync", pool="ray"), {"CPU": 2.0})  # the defaults fit this machine


def test_preflight_on_a_real_cluster(ray_local):
    from toolgym.trainers.system.cluster import preflight

    with pytest.raises(ConfigError, match="the Ray cluster has 2"):
        preflight(TrainConfig.from_dict({"system": {"mode": "sync", "inference_workers": 8, "inference_cpus": 1}}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NoIds(BaseHTTPRequestHandler):
    def do_POST(self):  # http.server's name
        self.rfile.read(int(self.headers["content-length"]))
        body = json.dumps({"choices": [{"text": "hi", "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_an_engine_that_does_not_answer_or_returns_no_ids_is_refused():
    from toolgym.trainers.system.inference import check_engine_url

    url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(ConfigError, match=r"system.engine_urls\[0\] .* does not answer .*toolgym serve"):
        check_engine_url(url, "system.engine_urls[0]", timeout_s=2)
    server = HTTPServer(("127.0.0.1", 0), _NoIds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ConfigError, match="returned no token ids or log-probs"):
            check_engine_url(f"http://127.0.0.1:{server.server_port}/v1", "system.engine_urls[1]")
    finally:
        server.shutdown()


def test_toolgym_serve_as_an_engine_generates_like_hf_and_takes_weight_updates():
    torch = pytest.importorskip("torch")
    from toolgym.policies.generation import GenerationJob
    from toolgym.policies.hf_policy import HFPolicy
    from toolgym.policies.models import cached_tiny_model
    from toolgym.policies.serve import serve_in_thread
    from toolgym.policy import SamplingParams
    from toolgym.trainers.system.inference import EngineSpec, HFEngine, OpenAIEngine, check_engine_url

    folder = cached_tiny_model("kimi")
    jobs = [GenerationJob(prompt_ids=[5, 9, 13, 2 + i], seed=i, sampling=SamplingParams(max_new_tokens=6)) for i in range(3)]
    local = HFEngine(EngineSpec(model_dir=str(folder)))
    with serve_in_thread(HFPolicy.from_pretrained(folder)) as base:
        check_engine_url(base + "/v1", "system.engine_urls[0]")
        remote = OpenAIEngine(EngineSpec(kind="openai", url=base + "/v1"))

        def both():
            return asyncio.run(remote.generate_ids(jobs)), asyncio.run(local.generate_ids(jobs))

        before_remote, before_local = both()
        assert [r.token_ids for r in before_remote] == [r.token_ids for r in before_local]
        assert all(abs(a - b) < 1e-4 for r, h in zip(before_remote, before_local, strict=True) for a, b in zip(r.logprobs, h.logprobs, strict=True))
        state = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in local.policy.model.state_dict().items()}
        asyncio.run(remote.load_weights(state, 1))
        asyncio.run(local.load_weights(state, 1))
        after_remote, after_local = both()
        assert [r.token_ids for r in after_remote] == [r.token_ids for r in after_local]
        assert [r.logprobs for r in after_remote] != [r.logprobs for r in before_remote]  # the server really took them
        import httpx

        assert httpx.get(base + "/health").json()["weights_version"] == 1
        remote.close()
    local.close()


def test_the_vllm_engine_is_registered_and_a_missing_venv_is_refused_before_any_work(monkeypatch, tmp_path):
    from toolgym.policies.vllm_policy import VLLMEngine
    from toolgym.trainers.system.cluster import preflight
    from toolgym.trainers.system.inference import ENGINES

    assert ENGINES["vllm"] is VLLMEngine
    monkeypatch.setenv("TOOLGYM_VLLM_VENV", str(tmp_path / "no-venv"))
    config = TrainConfig.from_dict({"system": {"mode": "sync", "engine": "vllm"}})
    with pytest.raises(ConfigError, match="make vllm-venv"):
        preflight(config)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["inference", "learner"]), st.floats(0.0, 64.0), st.one_of(st.none(), st.integers(1, 64)))
def test_each_role_computes_on_the_cores_ray_reserved_for_it(role, cpus, threads):
    """A role's torch threads: its explicit *_threads, else its CPUs rounded up, never 0; never part of the fingerprint."""
    import math

    from toolgym.trainers.system.cluster import role_threads

    s = SystemSection(**{f"{role}_cpus": cpus, f"{role}_threads": threads})
    assert role_threads(s, role) == (threads if threads is not None else max(1, math.ceil(cpus)))
    cfg = TrainConfig.from_dict({"system": {"mode": "sync"}})
    moved = cfg.model_copy(update={"system": cfg.system.model_copy(update={f"{role}_threads": threads or 3})})
    assert moved.fingerprint() == cfg.fingerprint()
