"""A vLLM server as toolgym's inference engine: start one from ``.venv-vllm`` or attach to one.

vLLM pins its own torch and transformers, so it lives in its own venv (``make vllm-venv``)
and runs as a server subprocess; toolgym talks to it over HTTP only:

* ``POST /v1/completions`` with token-id prompts, answered with ``token_ids`` and raw
  log-probs (the server runs with ``--logprobs-mode raw_logprobs``);
* ``POST /collective_rpc`` (dev mode, ``VLLM_SERVER_DEV_MODE=1``) calling the worker
  extension ``toolgym.policies.vllm_ext.ToolgymWorkerExtension.toolgym_reload`` for weight
  updates, then ``POST /reset_prefix_cache`` so no cached prefix of the old weights is reused.

``VLLMServer.start`` launches one (niced, in its own process group, log in a file) and waits
for it with a deadline; ``VLLMServer.attach`` checks a running one. Both refuse, before any
work, what cannot serve a trainer: no vLLM venv (fix: ``make vllm-venv``), a URL that does not
answer, a server that returns no token ids or log-probs, or one without the reload extension.

Three CPU workarounds (see ``docs/policies.md``) are applied by ``prepare_model_dir`` and the
launch flags: DeepSeek-V3-shaped configs get ``topk_method``/``scoring_func``; MLA with a latent
cache other than vLLM's 576-wide one runs with ``VLLM_MLA_DISABLE=1``; the CPU rotary custom op
is turned off (``custom_ops: ["-rotary_embedding"]``), as it is wrong for multi-head queries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.errors import ConfigError, ToolgymError

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout (``.venv-vllm`` is looked for here)."""
VENV_ENV = "TOOLGYM_VLLM_VENV"
"""Environment variable naming the vLLM venv (default ``<repo>/.venv-vllm``)."""
EXTENSION_MODULE = "toolgym_vllm_ext"
"""The worker extension's module name in the server: a copy of ``vllm_ext.py`` on its own, since
importing it as ``toolgym.policies.vllm_ext`` would import toolgym (and its dependencies) in vLLM's venv."""
EXTENSION = f"{EXTENSION_MODULE}.ToolgymWorkerExtension"
MLA_LATENT_WIDTH = 576
"""The only ``kv_lora_rank + qk_rope_head_dim`` vLLM's CPU MLA backend accepts."""


ENGINE_DIED = ("EngineCore failed to start", "Engine core initialization failed")
"""Log lines (vLLM 0.32) saying the engine core died while starting. The server process itself
can take tens of seconds more to exit on a loaded machine, or hang in its shutdown, so
``wait_ready`` stops it as soon as one appears instead of waiting for it to go."""
_LOG_PREFIX = re.compile(r"^\([^)]*pid=\d+\)\s+[A-Z]+\s+\d\d-\d\d [\d:]+ \[[^\]]*\]\s?")
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*)?(?:Error|Exception)(?::\s.*)?$")


def startup_cause(log: str) -> str:
    """The first exception line (``SomeError: message``) in a server log, ``""`` if none.

    vLLM's own last line is usually a generic "see root cause above"; the root cause (the worker's
    exception) comes first. Process prefixes such as ``(Worker pid=7) ERROR 12-07 06:37:34 [x.py:9]``
    are removed.
    """
    for line in log.splitlines():
        text = _LOG_PREFIX.sub("", line).strip()
        if _EXCEPTION_LINE.match(text):
            return text
    return ""


class VLLMError(ToolgymError, RuntimeError):
    """A vLLM server cannot be used as an inference engine; the message says why and the fix."""


class VLLMNotInstalledError(VLLMError, ConfigError):
    """No venv with vLLM where one was looked for."""


class VLLMUnreachableError(VLLMError, ConfigError):
    """The server's URL does not answer, or a started server died or missed its deadline."""


class VLLMStartupError(VLLMUnreachableError):
    """A started server died before it answered (a bad model folder, flag or config).

    Attributes:
        returncode: The server's exit code (128 + N: killed by signal N); None when its engine
            died and the server was stopped before it exited by itself.
        cause: The first exception line of its log (``startup_cause``), the root cause.
        log_tail: The last lines of its log.
    """

    def __init__(self, message: str, *, returncode: int | None = None, cause: str = "", log_tail: str = ""):
        # Defaults so that pickling (an inference worker's error crossing Ray) rebuilds it; the attributes travel too.
        super().__init__(message)
        self.returncode = returncode
        self.cause = cause
        self.log_tail = log_tail


class VLLMNoTokenIdsError(VLLMError, ConfigError):
    """The server answers but returns no token ids or log-probs (a trainer needs both)."""


def vllm_venv() -> Path:
    """Where the vLLM venv is looked for: ``$TOOLGYM_VLLM_VENV`` or ``<repo>/.venv-vllm``."""
    return Path(os.environ.get(VENV_ENV) or REPO_ROOT / ".venv-vllm")


def vllm_python(venv: str | os.PathLike[str] | None = None) -> Path:
    """The vLLM venv's interpreter.

    Raises:
        VLLMNotInstalledError: No interpreter there (fix: ``make vllm-venv``).
    """
    root = Path(venv) if venv else vllm_venv()
    python = root / "bin" / "python"
    if not python.is_file() or not (root / ".toolgym-vllm-installed").is_file():
        raise VLLMNotInstalledError(
            f"no vLLM venv at {root} (looked for {python} and the install stamp); run `make vllm-venv` "
            f"(scripts/vllm_venv.sh, ~3 min, 3.5 GB) or set {VENV_ENV} to one"
        )
    return python


def write_extension(out_dir: str | os.PathLike[str]) -> Path:
    """Copy the worker extension into ``out_dir`` as ``toolgym_vllm_ext.py``; returns ``out_dir``.

    Put ``out_dir`` on the ``PYTHONPATH`` of a server started elsewhere and pass
    ``--worker-extension-cls toolgym_vllm_ext.ToolgymWorkerExtension`` for weight updates to work.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("vllm_ext.py"), out / f"{EXTENSION_MODULE}.py")
    return out


def prepare_model_dir(
    model_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> tuple[Path, dict[str, str]]:
    """A model folder vLLM's CPU backend loads correctly, and the environment it needs.

    Returns ``(folder, env)``: ``model_dir`` itself when nothing needs patching, else
    ``out_dir`` holding links to its files and a patched ``config.json``. DeepSeek-V3-shaped
    configs (``model_type == "deepseek_v3"``) without routing fields get HF's routing
    (``topk_method="noaux_tc"``, ``scoring_func="sigmoid"``), which vLLM otherwise reads as a
    router without ``e_score_correction_bias``; an MLA latent other than 576 wide adds
    ``VLLM_MLA_DISABLE=1`` (vLLM then runs it as plain multi-head attention, same math).
    """
    src = Path(model_dir)
    config_path = src / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"model_dir {str(src)!r} has no config.json; pass a save_pretrained folder")
    config = json.loads(config_path.read_text())
    env: dict[str, str] = {}
    if config.get("model_type") != "deepseek_v3":
        return src, env
    if int(config.get("kv_lora_rank", 0)) + int(config.get("qk_rope_head_dim", 0)) != MLA_LATENT_WIDTH:
        env["VLLM_MLA_DISABLE"] = "1"
    if "topk_method" in config and "scoring_func" in config:
        return src, env
    config.setdefault("topk_method", "noaux_tc")
    config.setdefault("scoring_func", "sigmoid")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name != "config.json" and not (out / item.name).exists():
            (out / item.name).symlink_to(item.resolve())
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out, env


class VLLMServerConfig(BaseModel):
    """How to launch a vLLM server for one model."""

    model_config = ConfigDict(extra="forbid")

    model_dir: str
    """A ``save_pretrained`` folder (safetensors, tokenizer, chat template)."""
    port: int = Field(default=0, ge=0, le=65535)
    """0: a free port."""
    max_model_len: int = Field(default=2048, ge=16)
    """Longest prompt plus generation the server accepts."""
    dtype: str = "float32"
    kv_cache_gib: int = Field(default=1, ge=1)
    """``VLLM_CPU_KVCACHE_SPACE``: GiB of KV cache (vLLM reads a whole number)."""
    startup_timeout_s: float = Field(default=600.0, gt=0)
    """Deadline for the server to answer (about 1 min idle, 3 min on a loaded 2-core machine)."""
    threads: int | None = None
    """``OMP_NUM_THREADS`` of the server (None: vLLM's default, every core)."""
    venv: str | None = None
    """The vLLM venv (None: ``vllm_venv()``)."""
    extra_args: list[str] = Field(default_factory=list)
    """More ``vllm.entrypoints.openai.api_server`` flags."""


class VLLMServer:
    """A vLLM OpenAI-compatible server: started here (and stopped by ``stop``) or attached to.

    Example:
        ``with VLLMServer.start(VLLMServerConfig(model_dir=d)) as server: server.url``
    """

    def __init__(self, url: str, *, process: subprocess.Popen[bytes] | None = None, log_path: Path | None = None,
                 workdir: Path | None = None):
        self.url = url.rstrip("/")
        """Base URL without ``/v1`` (``http://127.0.0.1:PORT``)."""
        self.process = process
        self.log_path = log_path
        self._workdir = workdir
        self.model_name = "toolgym"
        """The served model name requests carry (read from ``/v1/models`` by ``check``)."""

    @property
    def v1(self) -> str:
        """The OpenAI API base URL."""
        return self.url + "/v1"

    @classmethod
    def start(cls, config: VLLMServerConfig) -> VLLMServer:
        """Launch a server and wait until it serves token ids and has the reload extension.

        Raises:
            VLLMNotInstalledError: No vLLM venv (fix: ``make vllm-venv``).
            VLLMStartupError: It exited while starting (the error carries its log's tail).
            VLLMUnreachableError: It missed ``startup_timeout_s`` (the log tail says how far it got).
        """
        python = vllm_python(config.venv)
        workdir = Path(tempfile.mkdtemp(prefix="toolgym-vllm-"))
        model, extra_env = prepare_model_dir(config.model_dir, workdir / "model")
        port = config.port or _free_port()
        paths = (str(write_extension(workdir / "ext")), os.environ.get("PYTHONPATH", ""))
        env = {**os.environ, **extra_env, "VLLM_CPU_KVCACHE_SPACE": str(config.kv_cache_gib),
               "VLLM_SERVER_DEV_MODE": "1", "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        if config.threads:
            env["OMP_NUM_THREADS"] = str(config.threads)
        # The extension module doubles as a supervisor that stops the server if this process dies.
        supervisor = [str(python), str(workdir / "ext" / f"{EXTENSION_MODULE}.py"), str(os.getpid())]
        cmd = ["nice", "-n", "10", *supervisor, str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--dtype", config.dtype, "--enforce-eager", "--max-model-len", str(config.max_model_len),
               "--logprobs-mode", "raw_logprobs", "--host", "127.0.0.1", "--port", str(port),
               "--served-model-name", "toolgym", "--worker-extension-cls", EXTENSION,
               "--compilation-config", json.dumps({"custom_ops": ["-rotary_embedding"]}), *config.extra_args]
        log_path = workdir / "server.log"
        with open(log_path, "wb") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        server = cls(f"http://127.0.0.1:{port}", process=process, log_path=log_path, workdir=workdir)
        try:
            server.wait_ready(config.startup_timeout_s)
            server.check()
        except BaseException:
            server.stop()
            raise
        return server

    @classmethod
    def attach(cls, url: str, *, timeout_s: float = 10.0) -> VLLMServer:
        """A running server at ``url`` (with or without ``/v1``), checked like a started one."""
        base = url.rstrip("/").removesuffix("/v1")
        server = cls(base)
        server.wait_ready(timeout_s)
        server.check()
        return server

    def wait_ready(self, timeout_s: float) -> None:
        """Poll ``/health`` until it answers 200, the server dies, or the deadline passes.

        Raises:
            VLLMStartupError: The process exited, or its log says the engine died (``ENGINE_DIED``).
            VLLMUnreachableError: No answer by the deadline.
        """
        import httpx

        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while True:
            self._raise_if_died()
            try:
                response = httpx.get(self.url + "/health", timeout=5.0)
                if response.status_code == 200:
                    return
                last = f"/health answered {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                where = f"; its log ends:\n{self.log_tail()}" if self.log_path else ""
                raise VLLMUnreachableError(
                    f"vLLM server at {self.url} did not answer within {timeout_s:.0f} s ({last}){where}")
            time.sleep(1.0)

    def _raise_if_died(self) -> None:
        """Raise ``VLLMStartupError`` if a server started here has exited or logged its engine's death."""
        if self.process is None:
            return
        code = self.process.poll()
        log = self.log_path.read_text(errors="replace") if self.log_path and self.log_path.is_file() else ""
        if code is None and not any(marker in log for marker in ENGINE_DIED):
            return
        cause, tail = startup_cause(log), self.log_tail()
        how = f"exited with code {code}" if code is not None else "logged that its engine died"
        raise VLLMStartupError(f"vLLM server {how} while starting: {cause or 'no exception in its log'}; "
                               f"fix the model folder, flags or config. Its log ends:\n{tail}",
                               returncode=code, cause=cause, log_tail=tail)

    def check(self) -> None:
        """Refuse a server that returns no token ids or log-probs, or lacks the reload extension."""
        import httpx

        self.model_name = str(self.served_model().get("id") or self.model_name)
        body = {"model": self.model_name, "prompt": [1, 2], "max_tokens": 1, "temperature": 0.0, "logprobs": 0,
                "return_token_ids": True}
        try:
            response = httpx.post(self.v1 + "/completions", json=body, timeout=60.0)
        except httpx.HTTPError as exc:
            raise VLLMUnreachableError(f"{self.v1}/completions does not answer ({type(exc).__name__}: {exc})") from None
        if response.status_code != 200:
            raise VLLMError(f"{self.v1}/completions answered {response.status_code} to a token-id prompt: "
                            f"{response.text[:300]}")
        choice = (response.json().get("choices") or [{}])[0]
        logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
        if not choice.get("token_ids") or not logprobs:
            raise VLLMNoTokenIdsError(
                f"{self.v1}/completions answered without token_ids and log-probs ({response.text[:200]}); "
                "toolgym needs a vLLM that honours return_token_ids (>= 0.10)"
            )
        try:
            self.rpc("toolgym_ping")
        except VLLMError as exc:
            raise VLLMError(f"{exc}; start the server with VLLM_SERVER_DEV_MODE=1 and "
                            f"--worker-extension-cls {EXTENSION} (VLLMServer.start does both)") from None

    def served_model(self) -> dict[str, Any]:
        """The first entry of ``GET /v1/models`` (``id``, ``max_model_len``...); ``{}`` if unreadable."""
        import httpx

        try:
            models = httpx.get(self.v1 + "/models", timeout=30.0).json().get("data") or [{}]
        except (httpx.HTTPError, ValueError, AttributeError):
            return {}
        return dict(models[0]) if isinstance(models[0], dict) else {}

    def max_model_len(self) -> int | None:
        """The longest prompt plus generation the server accepts, if it says."""
        value = self.served_model().get("max_model_len")
        return int(value) if isinstance(value, int) else None

    def rpc(self, method: str, *args: str, timeout_s: float = 300.0, **kwargs: str) -> list[Any]:
        """Call a worker method on every worker (``POST /collective_rpc``); one result per worker.

        Arguments travel as strings (the endpoint passes nothing else); the method parses them.
        """
        import httpx

        try:
            body = {"method": method, "args": list(args), "kwargs": kwargs}
            response = httpx.post(self.url + "/collective_rpc", json=body, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise VLLMUnreachableError(
                f"{self.url}/collective_rpc does not answer ({type(exc).__name__}: {exc})") from None
        if response.status_code != 200:
            raise VLLMError(
                f"{self.url}/collective_rpc {method} answered {response.status_code}: {response.text[:300]}")
        return list(response.json().get("results", [])) if response.content else []

    def reload_weights(self, path: str | os.PathLike[str]) -> float:
        """Load weights from ``path`` (folder, ``.safetensors`` or ``torch.save`` file); returns seconds.

        The MoE experts are re-packed and the prefix cache reset, so the next request sees the new
        weights only.
        """
        t0 = time.perf_counter()
        results = self.rpc("toolgym_reload", str(Path(path).resolve()))
        failed = [r["error"] for r in results if isinstance(r, dict) and "error" in r]
        if failed or not results:
            raise VLLMError(f"the server could not load {path}: {failed[0] if failed else 'no worker answered'}; "
                            "its weights may be partly replaced, so reload a good checkpoint before sampling")
        self.reset_prefix_cache()
        return time.perf_counter() - t0

    def reset_prefix_cache(self) -> None:
        """Drop cached prefixes (computed under the old weights)."""
        import httpx

        response = httpx.post(self.url + "/reset_prefix_cache", timeout=60.0)
        if response.status_code != 200:
            raise VLLMError(f"{self.url}/reset_prefix_cache answered {response.status_code}: {response.text[:300]}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of a started server's log ("" when attached)."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop a server this object started (its whole process group); attached servers are left alone."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(10.0)
        if process is not None:  # the engine-core child may outlive the server's main process
            _signal_group(process, signal.SIGKILL)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> VLLMServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
