"""A vLLM worker extension that reloads weights in place and re-packs the CPU MoE experts.

This module runs inside the vLLM server's worker process, in vLLM's own venv: it imports only
the standard library, torch and vllm, never toolgym. ``VLLMServer.start`` copies it to a folder
on the server's ``PYTHONPATH`` as ``toolgym_vllm_ext`` (``--worker-extension-cls
toolgym_vllm_ext.ToolgymWorkerExtension``; ``vllm_engine.write_extension`` for servers started
elsewhere), since importing it through the ``toolgym`` package would import toolgym there.

Why it exists: vLLM's ``reload_weights`` loads new weights into the model but, on a weight
update, skips the experts' ``process_weights_after_loading`` (it assumes the kernel layout
needs no redo). On the CPU backend that step packs each MoE layer's ``w13``/``w2`` into the
grouped-GEMM layout, so after a plain reload the experts hold unpacked weights read as packed
ones: outputs change but are wrong. ``toolgym_reload`` reloads and then packs the experts again,
after which outputs equal the HF model on the same weights and reloading the old weights gives
the old outputs bit for bit.

Called over HTTP through the dev-mode ``POST /collective_rpc`` (``VLLM_SERVER_DEV_MODE=1``),
whose arguments are strings; the prefix cache (held by the scheduler, not the worker) is reset
with ``POST /reset_prefix_cache`` afterwards, by the caller.

Run as a script (``python toolgym_vllm_ext.py PARENT_PID COMMAND...``) it is the server's
supervisor instead: see ``supervise``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any


def _state_dict(path: str) -> dict[str, Any]:
    """Tensors from one file: safetensors by extension, otherwise a ``torch.save``'d state dict."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return dict(load_file(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(f"{path} holds a {type(state).__name__}, expected a state dict (name -> tensor)")
    return state


def repack_cpu_moe_experts(model: Any) -> int:
    """Pack every CPU-kernel MoE layer's freshly loaded expert weights; returns how many layers.

    Only layers whose experts use the CPU unquantized kernel (``cpu_prepack_moe_weight``) are
    touched; the packed tensors are copied into the existing storage, so references the kernel
    holds stay valid.
    """
    import torch
    from vllm._custom_ops import cpu_prepack_moe_weight
    from vllm.model_executor.layers.fused_moe.experts.cpu_moe import CPUUnquantizedExperts

    packed = 0
    for module in model.modules():
        kernel = getattr(getattr(module, "quant_method", None), "moe_kernel", None)
        experts = getattr(kernel, "fused_experts", None)
        if not isinstance(experts, CPUUnquantizedExperts) or experts._use_zentorch:
            continue
        with torch.no_grad():
            for name in ("w13_weight", "w2_weight"):
                weight = getattr(module, name)
                fresh = cpu_prepack_moe_weight(weight.data, experts.isa)
                if fresh.shape != weight.shape:  # a padded layout cannot be refilled in place
                    raise RuntimeError(
                        f"re-packed {name} has shape {tuple(fresh.shape)}, expected {tuple(weight.shape)}")
                weight.data.copy_(fresh)
        packed += 1
    return packed


class ToolgymWorkerExtension:
    """Methods mixed into vLLM's worker class; call them with ``collective_rpc``."""

    def toolgym_reload(self, path: str) -> dict[str, Any]:
        """Load new weights from ``path`` and re-pack the MoE experts.

        Args:
            path: A folder with safetensors checkpoint files (the model folder layout), a
                ``.safetensors`` file, or a ``torch.save``'d state dict; tensor names are the
                checkpoint's (an HF model's ``state_dict()`` names).

        Returns:
            ``{"seconds": load time, "moe_layers_repacked": n, "tensors": count or -1 for a folder}``,
            or ``{"error": message}`` (the weights may then be partly loaded: reload good ones).
        """
        try:
            return self._reload(path)
        except Exception as exc:  # an exception here would kill vLLM's engine; the caller raises instead
            return {"error": f"{type(exc).__name__}: {exc}"}

    def _reload(self, path: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        runner: Any = self.model_runner  # type: ignore[attr-defined]  # the worker this is mixed into
        if os.path.isdir(path):
            runner.reload_weights(weights_path=path, is_checkpoint_format=True)
            count = -1
        else:
            state = _state_dict(path)
            runner.reload_weights(weights_iterator=iter(state.items()), is_checkpoint_format=True)
            count = len(state)
        repacked = repack_cpu_moe_experts(runner.get_model())
        return {"seconds": time.perf_counter() - t0, "moe_layers_repacked": repacked, "tensors": count}

    def toolgym_ping(self) -> str:
        """``"ok"``: the extension is installed (checked once after the server starts)."""
        return "ok"


def supervise(parent: int, command: Sequence[str], *, poll_s: float = 0.5, grace_s: float = 10.0) -> int:
    """Run ``command`` until it exits, or until process ``parent`` is no longer this one's parent.

    Why: the server runs in a session of its own (so that stopping the group stops vLLM's
    engine-core child too), which also means nothing ends it when the process that started it is
    SIGKILLed (``ray.kill`` of an inference worker, an interrupted test run): it would keep its
    port, cores and GiBs of memory. Orphaned, the supervisor stops its whole group (SIGTERM, then
    SIGKILL after ``grace_s``). SIGTERM and SIGINT sent to the supervisor alone reach the server,
    and a supervisor killed outright takes the server with it (Ray SIGKILLs a dead worker's
    child processes, which is this supervisor, not the server).

    Returns:
        The server's exit code (128 + signal number for a signal), which becomes the supervisor's.
    """
    child = subprocess.Popen(list(command), preexec_fn=_terminated_with(os.getpid()))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: child.send_signal(signum))
    while True:
        try:
            code = child.wait(timeout=poll_s)
            return 128 - code if code < 0 else code
        except subprocess.TimeoutExpired:
            pass
        if os.getppid() != parent:  # re-parented: whoever started the server is gone
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.killpg(0, signal.SIGTERM)
            try:
                child.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            os.killpg(0, signal.SIGKILL)  # the engine core and anything else left, this process included


def _terminated_with(parent: int) -> Any:
    """A ``preexec_fn``: the child gets SIGTERM when ``parent`` dies (Linux ``PR_SET_PDEATHSIG``; no-op elsewhere)."""

    def arm() -> None:
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return
        if sys.platform.startswith("linux") and libc.prctl(1, int(signal.SIGTERM), 0, 0, 0) == 0:  # 1: PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before the request took effect
                os._exit(1)

    return arm


if __name__ == "__main__":
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        sys.exit(f"usage: python {sys.argv[0]} PARENT_PID COMMAND...")
    sys.exit(supervise(int(sys.argv[1]), sys.argv[2:]))
