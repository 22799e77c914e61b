"""vLLM as an inference engine: launch checks without a server, then a real server per model.

The first tests need no vLLM (model-folder patching, the typed errors). The ``vllm`` tier
starts one real server per tiny model for the whole module (``make test-vllm``; ~1-3 min each
on 2 cores) and checks the engine against a fresh HF forward in the main venv: behaviour
log-probs, weight updates (and that reloading the old weights restores the old outputs bit for
bit), token-faithful rows through ``run_episodes``, and a short GRPO run synced after each update.
It runs only when asked for (``-m vllm``): the default suite never pays for a server start.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolgym.errors import ConfigError
from toolgym.policies.vllm_engine import (
    MLA_LATENT_WIDTH,
    VLLMError,
    VLLMNotInstalledError,
    VLLMNoTokenIdsError,
    VLLMServer,
    VLLMServerConfig,
    VLLMStartupError,
    VLLMUnreachableError,
    prepare_model_dir,
    startup_cause,
    vllm_python,
)
from toolgym.policy import PolicyError

LOGPROB_TOL = 1e-4
DIGITS = {
    "name": "digits", "env_ids": ["toolgym/unitconv-v0"],
    "criteria": [{"id": "digits", "description": "share of digits in what the policy wrote", "weight": 1,
                  "source": {"type": "critic", "critic": "digits"}}],
}


# ---------------------------------------------------------------------------------------- no server


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["deepseek_v3", "qwen3_moe", "llama"]), rank=st.integers(1, 600), rope=st.integers(1, 128),
       routing=st.booleans(),
       extra=st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=8), st.integers(), max_size=4))
def test_prepare_model_dir_patches_only_what_vllm_needs(tmp_path_factory, kind, rank, rope, routing, extra):
    src = tmp_path_factory.mktemp("src")
    config = {**extra, "model_type": kind, "kv_lora_rank": rank, "qk_rope_head_dim": rope}
    if routing:
        config |= {"topk_method": "greedy", "scoring_func": "softmax"}
    (src / "config.json").write_text(json.dumps(config))
    (src / "model.safetensors").write_bytes(b"weights")
    folder, env = prepare_model_dir(src, tmp_path_factory.mktemp("out") / "model")
    patched = json.loads((folder / "config.json").read_text())
    if kind != "deepseek_v3":
        assert (folder, env) == (src, {})
        return
    assert ("VLLM_MLA_DISABLE" in env) == (rank + rope != MLA_LATENT_WIDTH)
    assert {k: v for k, v in patched.items() if k not in ("topk_method", "scoring_func")} == \
        {k: v for k, v in config.items() if k not in ("topk_method", "scoring_func")}
    expected = ("greedy", "softmax") if routing else ("noaux_tc", "sigmoid")  # a config's own routing is kept
    assert (patched["topk_method"], patched["scoring_func"]) == expected
    assert (folder / "model.safetensors").read_bytes() == b"weights"


def test_missing_venv_names_the_fix(tmp_path):
    with pytest.raises(VLLMNotInstalledError, match="make vllm-venv"):
        vllm_python(tmp_path / "nowhere")
    with pytest.raises(VLLMNotInstalledError, match="make vllm-venv"):
        VLLMServer.start(VLLMServerConfig(model_dir=str(tmp_path), venv=str(tmp_path)))


def test_a_url_that_does_not_answer_is_refused_with_the_url():
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(VLLMUnreachableError, match=f"127.0.0.1:{port}.*did not answer"):
        VLLMServer.attach(f"http://127.0.0.1:{port}/v1", timeout_s=1.0)
    assert time.monotonic() - t0 < 10


class _NoIds(http.server.BaseHTTPRequestHandler):
    """A healthy OpenAI-style server whose completions carry text only (as many hosted APIs do)."""

    def do_GET(self):
        self._send({})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send({"choices": [{"index": 0, "text": "hi", "finish_reason": "length", "logprobs": None}]})

    def _send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_a_server_without_token_ids_is_refused():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoIds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(VLLMNoTokenIdsError, match="without token_ids"):
            VLLMServer.attach(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()


_NOISE = st.sampled_from([
    "(APIServer pid=12) INFO 12-07 06:36:28 [api_utils.py:347] version 0.32.0",
    "(Worker pid=7) ERROR 12-07 06:37:34 [multiproc_executor.py:953] Traceback (most recent call last):",
    '  File "/venv/vllm/v1/worker/cpu_model_runner.py", line 69, in load_model',
    "    raise RuntimeError(", "INFO:     Waiting for application startup.", "", "Errors below:",
])
_NAMES = st.sampled_from(["RuntimeError", "ValueError", "Exception", "pydantic_core._pydantic_core.ValidationError",
                          "torch.OutOfMemoryError", "KeyError"])
_PREFIXES = st.sampled_from(["", "(Worker pid=17228) ERROR 12-07 06:37:34 [multiproc_executor.py:953] ",
                             "(EngineCore pid=3) ERROR 12-07 06:37:39 [core.py:1510] "])


@settings(max_examples=50, deadline=None)
@given(before=st.lists(_NOISE, max_size=6), name=_NAMES, message=st.text("abc xyz`/0-9", max_size=30),
       prefix=_PREFIXES, after=st.lists(st.tuples(_NOISE, _NAMES), max_size=4))
def test_startup_cause_is_the_first_exception_line_without_its_prefix(before, name, message, prefix, after):
    cause = f"{name}: {message}" if message.strip() else name
    later = [line for noise, other in after for line in (noise, f"{other}: a later, generic error")]
    log = "\n".join([*before, prefix + cause, *later])
    assert startup_cause(log) == cause.strip()
    assert startup_cause("\n".join(before)) == ""


def test_a_startup_error_survives_pickling_as_a_ray_actor_error_does():
    import pickle

    error = VLLMStartupError("vLLM server exited", returncode=1, cause="RuntimeError: no weights", log_tail="...")
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), str(again), again.returncode, again.cause, again.log_tail) == \
        (VLLMStartupError, "vLLM server exited", 1, "RuntimeError: no weights", "...")


def _supervised(tmp_path: Path, script: str) -> list[str]:
    """The command ``VLLMServer.start`` uses around a server, with ``python -c script`` as the server."""
    from toolgym.policies.vllm_engine import EXTENSION_MODULE, write_extension

    ext = write_extension(tmp_path / "ext") / f"{EXTENSION_MODULE}.py"
    return [sys.executable, str(ext), str(os.getpid()), sys.executable, "-c", script]


def _running(pid: int) -> bool:
    try:  # a zombie waiting for its reaper has stopped running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_supervisor_returns_the_servers_exit_code(tmp_path):
    assert subprocess.run(_supervised(tmp_path, "raise SystemExit(3)"), timeout=60).returncode == 3
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert subprocess.run(_supervised(tmp_path, killed), timeout=60).returncode == 128 + signal.SIGKILL


@pytest.mark.parametrize("killed", ["starter", "supervisor"])
def test_a_server_whose_starter_is_killed_stops(tmp_path, killed):
    """What ``ray.kill`` of an inference worker does: the starter dies by SIGKILL (and Ray SIGKILLs its children,
    the supervisor among them); the server must follow either way."""
    pid_file = tmp_path / "server.pid"
    server = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    command = _supervised(tmp_path, server)
    starter = subprocess.Popen([sys.executable, "-c", (
        "import os, subprocess, sys, time; cmd = sys.argv[1:]; cmd[2] = str(os.getpid()); "
        "subprocess.Popen(cmd, start_new_session=True); time.sleep(600)"), *command])
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.is_file() and pid_file.read_text()):
            assert time.monotonic() < deadline and starter.poll() is None, "the supervised server never started"
            time.sleep(0.1)
        server_pid = int(pid_file.read_text())
        assert _running(server_pid)
        if killed == "supervisor":
            os.kill(os.getpgid(server_pid), signal.SIGKILL)  # the supervisor leads the server's group
    finally:
        starter.kill()
        starter.wait()
    deadline = time.monotonic() + 20
    while _running(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(server_pid), "the server outlived the process that started it"


# ---------------------------------------------------------------------------------------- real vLLM

torch = pytest.importorskip("torch")


@pytest.mark.vllm
def test_a_server_that_cannot_start_raises_its_root_cause_without_waiting_out_the_deadline(vllm_tier, tmp_path):
    """A model folder without weights: vLLM's engine core dies while loading, and the server then takes tens of
    seconds to exit (or hangs); the start is refused as soon as the log says the engine died."""
    from toolgym.policies.models import cached_tiny_model

    source = cached_tiny_model("qwen3")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    t0 = time.monotonic()
    with pytest.raises(VLLMStartupError, match="Cannot find any model weights") as caught:
        VLLMServer.start(VLLMServerConfig(model_dir=str(tmp_path), startup_timeout_s=900))
    seconds = time.monotonic() - t0
    print(f"refused after {seconds:.0f} s (exit code {caught.value.returncode}): {caught.value.cause}")
    assert "Cannot find any model weights" in caught.value.cause and caught.value.log_tail
    left = [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(tmp_path) in _cmdline(p)]
    assert left == [], "a process of the failed server is still running"


def _cmdline(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:  # the process ended while we looked
        return ""


@pytest.fixture(scope="module", params=["qwen3", "kimi"])
def engine(request, vllm_tier):
    """``(policy, model_dir)``: one vLLM server per tiny model, shared by the module's tests."""
    from toolgym.policies.models import cached_tiny_model
    from toolgym.policies.vllm_policy import VLLMPolicy

    model_dir = cached_tiny_model(request.param)
    policy = VLLMPolicy.start(model_dir)
    yield policy, model_dir
    policy.close()


def hf_model(model_dir, state=None):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    if state is not None:
        model.load_state_dict(state)
    return model


def hf_logprobs(model, prompt: list[int], ids: list[int]) -> list[float]:
    """Raw log-probs of ``ids`` after ``prompt`` from one full forward."""
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + ids])).logits[0].float()  # (T, V)
    logp = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)  # (len(ids), V)
    return logp.gather(1, torch.tensor(ids)[:, None]).squeeze(1).tolist()


def sample(policy, n: int = 4, seed: int = 0):
    from toolgym.policies.generation import GenerationJob
    from toolgym.policy import SamplingParams

    jobs = [GenerationJob(prompt_ids=[7 + i, 40 + 3 * i, 100 + i, 9], seed=seed + i,
                          sampling=SamplingParams(max_new_tokens=24, temperature=1.0)) for i in range(n)]
    return jobs, asyncio.run(policy.generate_ids(jobs))


def mismatch(got, want) -> str:
    """How two samplings differ ("" when bit-identical): requests whose ids differ, and the largest log-prob change."""
    ids = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a.token_ids != b.token_ids]
    gaps = [abs(x - y) for a, b in zip(got, want, strict=True) if a.token_ids == b.token_ids
            for x, y in zip(a.logprobs, b.logprobs, strict=True)]
    worst = max(gaps, default=0.0)
    return f"requests with other ids {ids}, largest log-prob change on same ids {worst:.3e}" if ids or worst else ""


def worst_gap(model, jobs, results) -> float:
    """Largest |HF - vLLM| log-prob over every sampled token (inf for a failed request or a NaN)."""
    if any(isinstance(r, PolicyError) for r in results):
        return math.inf
    gaps = [abs(a - b) for job, r in zip(jobs, results, strict=True)
            for a, b in zip(hf_logprobs(model, job.prompt_ids, r.token_ids), r.logprobs, strict=True)]
    return max(math.inf if math.isnan(g) else g for g in gaps)


@pytest.mark.vllm
def test_behaviour_logprobs_equal_a_fresh_hf_forward(engine):
    policy, model_dir = engine
    jobs, results = sample(policy)
    assert all(r.token_ids and len(r.token_ids) == len(r.logprobs) for r in results)
    gap = worst_gap(hf_model(model_dir), jobs, results)
    print(f"{model_dir.name}: largest |vLLM - HF| log-prob gap {gap:.2e}")
    assert gap < LOGPROB_TOL
    _, again = sample(policy)
    assert [r.token_ids for r in again] == [r.token_ids for r in results]  # per-request seeds reproduce


@pytest.mark.vllm
def test_weight_update_matches_hf_on_the_new_weights_and_the_old_ones_come_back(engine):
    policy, model_dir = engine
    jobs, before = sample(policy, seed=100)
    generator = torch.Generator().manual_seed(0)
    old = hf_model(model_dir).state_dict()
    new = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in old.items()}
    seconds = policy.load_state_dict(new, version=1)
    _, after = sample(policy, seed=100)
    gap = worst_gap(hf_model(model_dir, new), jobs, after)
    print(f"{model_dir.name}: weight sync {seconds:.3f} s for {sum(v.numel() for v in new.values())} parameters, "
          f"gap to HF on the new weights {gap:.2e}")
    assert [r.token_ids for r in after] != [r.token_ids for r in before]
    assert gap < LOGPROB_TOL
    policy.load_weights_from(model_dir, version=2)
    with pytest.raises(ConfigError, match="do not match its checkpoint"):  # refused before the server sees it
        policy.load_state_dict({**old, "model.extra.weight": torch.zeros(2)}, version=3)
    _, restored = sample(policy, seed=100)
    assert mismatch(restored, before) == ""


@pytest.mark.vllm
def test_reload_without_the_expert_repack_is_wrong_and_the_extension_fixes_it(engine, tmp_path):
    # Pins the vLLM behaviour the worker extension exists for: should a vLLM release re-pack the
    # CPU experts itself, the first assertion fails and the workaround can go.
    policy, model_dir = engine
    generator = torch.Generator().manual_seed(1)
    model = hf_model(model_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    model.save_pretrained(tmp_path)  # checkpoint names and layout, as vLLM reads a folder
    jobs, _ = sample(policy, seed=200)
    policy.server.rpc("reload_weights", weights_path=str(tmp_path))  # vLLM's own reload only
    policy.server.reset_prefix_cache()
    plain = worst_gap(model, jobs, sample(policy, seed=200)[1])
    policy.load_weights_from(tmp_path, version=9)
    fixed = worst_gap(model, jobs, sample(policy, seed=200)[1])
    print(f"{model_dir.name}: gap to HF after vLLM's reload {plain:.2e}, after toolgym_reload {fixed:.2e}")
    policy.load_weights_from(model_dir, version=0)
    assert plain > 1e-2 and fixed < LOGPROB_TOL


@pytest.mark.vllm
def test_a_failed_reload_is_an_error_and_good_weights_recover_the_server(engine, tmp_path):
    policy, model_dir = engine
    jobs, before = sample(policy, seed=300)
    bad = tmp_path / "bad.pt"
    torch.save({"model.no_such_layer.weight": torch.zeros(3)}, bad)  # past the client-side name check
    with pytest.raises(VLLMError, match="could not load"):
        policy.server.reload_weights(bad)
    policy.load_weights_from(model_dir, version=0)
    _, after = sample(policy, seed=300)
    assert mismatch(after, before) == ""


@pytest.mark.vllm
def test_episodes_give_token_faithful_rows(engine):
    from toolgym.policy import SamplingParams
    from toolgym.rollouts.loop import run_episodes
    from toolgym.rollouts.rows import episode_to_rows

    policy, model_dir = engine
    episodes = run_episodes("toolgym/unitconv-v0", policy, n=4, seed=3, sampling=SamplingParams(max_new_tokens=32))
    model = hf_model(model_dir)
    checked = 0
    for ep in episodes:
        for row in episode_to_rows(ep):
            for (start, end), index in zip(row.turn_spans, row.turn_indices, strict=True):
                turn = ep.turns[index]
                assert row.input_ids[:start] == turn.prompt_token_ids and row.input_ids[start:end] == turn.token_ids
                assert max(abs(a - b) for a, b in zip(hf_logprobs(model, row.input_ids[:start], turn.token_ids),
                                                      turn.logprobs, strict=True)) < LOGPROB_TOL
                checked += 1
    assert checked >= 4


def _digit_share(episode) -> float:
    text = "".join(t.text for t in episode.turns)
    return sum(ch.isdigit() for ch in text) / max(1, len(text))


@pytest.mark.vllm
def test_grpo_trains_through_vllm_with_a_sync_after_each_update(engine):
    from toolgym.rubrics import FunctionCritic, rubric_from_dict
    from toolgym.trainers import metrics as m
    from toolgym.trainers.config import TrainConfig
    from toolgym.trainers.run import build_trainer, load_policy

    policy, model_dir = engine
    kind = "qwen3" if "qwen3" in str(model_dir) else "kimi"
    cfg = TrainConfig.from_dict({
        "model": {"tiny": kind}, "algorithm": {"group_size": 2},
        "rollout": {"tasks_per_iteration": 2, "max_new_tokens": 8},
        "optim": {"lr": 1e-3, "minibatch_size": 4, "micro_batch_size": 2},
        "run": {"iterations": 2, "tensorboard": False, "plots": False},
    })
    model, tokenizer = load_policy(cfg)
    digits = FunctionCritic("digits", lambda ep, criterion: _digit_share(ep))  # a reward with variance even at random
    trainer = build_trainer(cfg, model, tokenizer, rubric=rubric_from_dict(DIGITS), critics=[digits])
    trainer.sampler.policy.close()
    trainer.sampler.policy = policy  # generation on vLLM; the trainer's model is the learner
    policy.load_state_dict(model.state_dict(), version=0)
    versions = []

    def sync(metrics):
        versions.append(trainer.iteration_index)
        policy.load_state_dict(trainer.model.state_dict(), version=trainer.iteration_index)

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    history = trainer.train(2, on_iteration=sync)
    syncs = [round(x, 2) for x in policy.sync_seconds[-2:]]
    print(f"{model_dir.name}: GRPO through vLLM, rows {[row[m.ROWS] for row in history]}, "
          f"loss {[round(row[m.LOSS], 4) for row in history]}, sync {syncs} s")
    assert versions == [1, 2] and all(row[m.ROWS] > 0 and row[m.STEPS] >= 1 for row in history)
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    # vLLM now serves the learner's updated weights
    jobs, results = sample(policy, seed=7)
    assert worst_gap(trainer.model.eval(), jobs, results) < LOGPROB_TOL
    policy.load_weights_from(model_dir, version=0)  # leave the shared server on the folder's weights
