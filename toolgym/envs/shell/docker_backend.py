"""The ``docker`` sandbox backend: one container per sandbox, driven through the ``docker`` SDK.

Each sandbox is a container of any image (default ``toolgym/shell:bookworm``, built offline by
``make sandbox-deps``) with no network, memory/CPU/pids limits, a read-only root, all
capabilities dropped but the few the harness's root needs (see ``docker_harness``),
``no-new-privileges``, Docker's default seccomp profile, a read-only ``/proc/sys`` and
size-limited tmpfs mounts for the only writable places (``/workspace``, ``/tmp`` which is also
``$HOME``, ``/dev/shm``). ``make sandbox-deps`` starts dockerd with ``--userns-remap``, so no
process of a container maps to host uid 0 (``userns_remapped()`` says whether the daemon does).

The model's commands go to one attached ``bash`` per container (an exec costs about 55 ms, a
command written to an attached shell about 0.4 ms; see ``benchmarks/shell_envs.py``); the
session protocol lives in ``docker_session``. Everything the environment does for itself
(file tools, export, import, reset, checks) is a separate exec of ``docker_harness``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import select
import socket
import warnings
from typing import Any

from toolgym.envs.shell.docker_harness import (
    EXPORT,
    HARNESS_CAPS,
    IMPORT,
    KILL_MODEL,
    LIST_DIR,
    MODEL_HOME,
    MODEL_UID,
    MODEL_USER,
    READ_FILE,
    READ_FILES,
    RESET_TO,
    RUN_ISOLATED,
    SCRATCH,
    SHELL_PATH,
    WIPE_SCRATCH,
    WRITE_FILE,
    ExecResult,
    checked_path,
    file_error,
    parse_listing,
    parse_reads,
    run_script,
)
from toolgym.envs.shell.docker_session import TRUNCATION_MARKER, DockerSession
from toolgym.envs.shell.docker_tar import from_gnu, to_gnu
from toolgym.envs.shell.protocol import shell_environment
from toolgym.envs.shell.quota import scratch_sizes
from toolgym.envs.shell.sandbox import (
    WORKSPACE,
    CommandResult,
    PathOutsideWorkspace,
    Sandbox,
    SandboxError,
    SandboxLimits,
    SandboxUnavailable,
)

DEFAULT_IMAGE = "toolgym/shell:bookworm"
"""The base image ``make sandbox-deps`` builds (debootstrapped Debian, no registry needed)."""
LABEL = "toolgym.sandbox"
"""Label on every container this backend starts, so leaks can be counted and cleaned."""
OWNER = "toolgym.owner"
"""Label holding the pid of the process that started the container."""
FIX = "run `make sandbox-deps` (as root) to install docker.io, start dockerd and build the image"


@functools.lru_cache(maxsize=1)
def docker_client() -> Any:
    """The process-wide ``docker.DockerClient`` (raises ``SandboxUnavailable`` with the fix)."""
    try:
        import docker
    except ImportError:
        raise SandboxUnavailable("the docker backend needs the docker SDK: pip install 'toolgym[docker]'") from None
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:  # the SDK raises DockerException, requests or socket errors
        raise SandboxUnavailable(f"dockerd is not answering ({type(exc).__name__}: {str(exc)[:200]}); {FIX}") from None
    return client


@functools.lru_cache(maxsize=1)
def userns_remapped() -> bool:
    """Whether dockerd remaps container uids (``--userns-remap``): then container root is not host root."""
    options = docker_client().info().get("SecurityOptions") or []
    return any("name=userns" in opt for opt in options)


@functools.lru_cache(maxsize=1)
def _warn_if_not_remapped() -> None:
    """Say once per process that the daemon gives a weaker guarantee than it should."""
    if not userns_remapped():
        warnings.warn(
            "dockerd runs without --userns-remap: root in a container (the sandbox's keeper and harness, never the "
            f"model's uid {MODEL_UID}) is host root with a few capabilities; {FIX} to restart it remapped",
            RuntimeWarning, stacklevel=3,
        )


class DockerSandbox(Sandbox):
    """A sandbox in a Docker container (see the module docstring for what it enforces).

    Args:
        limits: Resource limits; memory, pids and CPU become the container's cgroup limits.
        image: Any local image with bash, coreutils, findutils, tar and util-linux's setpriv.
        env: Extra environment variables of the model's shell.
    """

    backend = "docker"

    def __init__(self, limits: SandboxLimits | None = None, *, image: str = DEFAULT_IMAGE, env: dict[str, str] | None = None):
        super().__init__(limits)
        self.image = image
        # The same environment as bwrap's shell (task clock, no byte-code caches): without it
        # git commits and .pyc files carry the wall clock, and digests differ between runs.
        self.env = {**shell_environment(home=MODEL_HOME), **(env or {})}
        self.container: Any = None
        self.tether: Any = None
        self.session: DockerSession | None = None

    @property
    def alive(self) -> bool:
        """False once the container is gone (keeper OOM-killed, removed by hand, dockerd restarted).

        The shell's exec stream ends when the container stops, so a readable session socket
        that yields no byte means the container is dead; no API call is needed.
        """
        if not super().alive or self.session is None or self.session.sock is None:
            return False
        sock = self.session.sock
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return not readable or sock.recv(1, socket.MSG_PEEK) != b""
        except (OSError, ValueError):
            return False

    @classmethod
    def check_available(cls, image: str = DEFAULT_IMAGE, **_: Any) -> None:
        """Raise ``SandboxUnavailable`` (saying how to fix it) unless dockerd answers and ``image`` exists."""
        client = docker_client()
        import docker.errors

        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise SandboxUnavailable(f"docker image {image!r} is not built; {FIX} (or pass image= an existing local image)") from None
        _warn_if_not_remapped()

    # ------------------------------------------------------------------ lifecycle

    async def _start(self) -> None:
        self.check_available(self.image)
        await self._new_container()

    async def _new_container(self) -> None:
        """A new container and a fresh shell in it (the old container, if any, is removed)."""
        await self._drop_container()
        self.container = await asyncio.to_thread(self._create_container)
        self.session = DockerSession(docker_client(), self.container, self.env, self.limits.output_bytes, self._kill_model)
        try:
            await self.session.open()
        except BaseException:
            await self._drop_container()
            raise

    def _create_container(self) -> Any:
        lim = self.limits
        tmp_mb, shm_mb = scratch_sizes(lim)
        client = docker_client()
        try:
            container = client.containers.create(
                # The main process waits on stdin, which this process holds through an attach
                # socket (the tether): if this process dies, even by SIGKILL, the socket closes,
                # the keeper exits and auto_remove deletes the container. No leak after a crash.
                # The keeper runs as the container's root, out of reach of the model's uid.
                self.image, ["/usr/bin/head", "-c1"], stdin_open=True, auto_remove=True, init=True,  # docker-init reaps orphans
                network_mode="none", read_only=True, working_dir=WORKSPACE,
                tmpfs={  # exec: ./script.sh must run; nosuid, nodev are Docker's defaults
                    WORKSPACE: f"size={lim.workspace_mb}m,exec,uid={MODEL_UID},gid={MODEL_UID},mode=0755",
                    "/tmp": f"size={tmp_mb}m,exec,mode=1777",
                    # The harness's own: a check's copy of the workspace plus the check's output.
                    SCRATCH: f"size={2 * lim.workspace_mb + 16}m,mode=0700",
                },
                shm_size=f"{shm_mb}m", ipc_mode="private",
                mem_limit=f"{lim.memory_mb}m", memswap_limit=f"{lim.memory_mb}m", pids_limit=lim.pids,
                nano_cpus=int(lim.cpu_quota * 1e9), cap_drop=["ALL"], cap_add=HARNESS_CAPS,
                security_opt=["no-new-privileges"], hostname="sandbox", environment={"PATH": SHELL_PATH},
                labels={LABEL: "1", OWNER: str(os.getpid())},
            )
        except Exception as exc:
            raise SandboxError(f"could not create a container of {self.image!r}: {str(exc)[:300]}") from exc
        try:
            self.tether = client.api.attach_socket(container.id, params={"stdin": 1, "stream": 1})
            container.start()
        except Exception as exc:
            _remove(container)
            raise SandboxError(f"could not start a container of {self.image!r}: {str(exc)[:300]}") from exc
        return container

    async def _close(self) -> None:
        await self._drop_container()

    async def _drop_container(self) -> None:
        session, container, tether = self.session, self.container, self.tether
        self.session = self.container = self.tether = None
        if session is not None:
            session.detach()
        if container is not None:
            await asyncio.to_thread(_remove, container)
        if tether is not None:
            tether.close()

    # ------------------------------------------------------------------ the model's session

    async def _run(self, command: str, timeout_s: float) -> CommandResult:
        try:
            return await self._session().run(command, timeout_s)
        except SandboxError as exc:
            if not self._container_running():
                raise  # gone (dockerd, the OOM killer): infrastructure; ShellEnv replaces it at the next reset
            # Up, but its processes could not be killed (a fork bomb outracing the kill): the
            # model's doing, so it gets a new sandbox and a note rather than an env error.
            await self._new_container()
            return CommandResult(exit_code=None, note=f"the sandbox could not recover ({str(exc)[:200]}) and was replaced: "
                                 f"the workspace is empty and a new shell started in {WORKSPACE}")

    async def _reset_session(self) -> None:
        """Every model process killed, /tmp, /dev/shm and IPC wiped, a new shell; the workspace kept.

        A container that cannot run the kill (a fork bomb holding every pid, a keeper killed by
        the OOM killer) is replaced by a new one: the next episode starts clean either way.
        """
        session = self._session()
        async with session.lock:
            session.detach()
            try:
                await self._harness_with_pids(KILL_MODEL + WIPE_SCRATCH, "reset")
                await session.open()
                return
            except SandboxError:
                pass
        await self._new_container()

    async def _reset_to(self, data: bytes) -> None:
        """``_reset_session`` and ``_import_tar`` in one harness exec (reset ~0.3 s was three
        execs: kill and wipe, import, then the new shell's attach)."""
        session = self._session()
        data = await asyncio.to_thread(to_gnu, data)
        async with session.lock:
            session.detach()
            try:
                await self._harness_with_pids(RESET_TO, "reset the sandbox", stdin=data)
                await session.open()
                return
            except SandboxError:
                pass
        await self._new_container()
        await self._import_tar(data)

    async def _kill_model(self) -> None:
        await self._harness_with_pids(KILL_MODEL, "kill every model process")

    async def _harness_with_pids(self, script: str, what: str, stdin: bytes | None = None) -> None:
        """Run a kill script; when a fork bomb holds every pid (no exec can start), lend the
        container a few pids for the kill (the bomb mostly sleeps in fork retries) and take them back."""
        try:
            await self._harness(script, "none", stdin=stdin, what=what)
            return
        except SandboxError:
            if not self._container_running():
                raise
        container, pids = self.container, self.limits.pids
        await asyncio.to_thread(set_pids_limit, container.id, pids + 64)
        try:
            await self._harness(script, "none", stdin=stdin, what=what)
        finally:
            await asyncio.to_thread(set_pids_limit, container.id, pids)

    def _container_running(self) -> bool:
        try:
            self.container.reload()
            return bool(self.container.status == "running")
        except Exception:  # NotFound, API errors: as good as gone
            return False

    async def _run_isolated(self, command: str, timeout_s: float) -> CommandResult:
        """A task's check, outside the model's session (see ``docker_harness.RUN_ISOLATED``).

        A fresh ``bash -c`` as the model's uid with a clean environment; every model process but
        the (stopped) session shell is killed before and after, and the workspace is put back
        afterwards, so the check can neither be disturbed nor change what it measures.
        """
        session = self._session()
        cap = self.limits.output_bytes
        async with session.lock:
            started = asyncio.get_running_loop().time()
            done = await run_script(docker_client(), self.container.id, RUN_ISOLATED, session.shell_pid or "none",
                                    f"{timeout_s:.3f}", command, str(cap), timeout_s=timeout_s + 60.0)
            duration = asyncio.get_running_loop().time() - started
        header, _, stdout = done.stdout.partition(b"\n")
        fields = header.split()
        if done.exit_code != 0 or len(fields) != 3:
            raise SandboxError(f"could not run the check outside the model's session: {done.why()}")
        code, out_size, err_size = (int(f) for f in fields)
        result = CommandResult(stdout=_capped(stdout, out_size, cap), stderr=_capped(done.stderr, err_size, cap),
                               exit_code=code, duration_s=duration, truncated=max(out_size, err_size) > cap)
        if duration >= timeout_s:
            result.exit_code, result.timed_out = None, True
            result.note = f"the command ran past its {timeout_s:g} s limit; its processes were killed"
        return result

    # ------------------------------------------------------------------ harness: workspace

    async def _export_tar(self) -> bytes:
        done = await self._harness(EXPORT, what="export the workspace")
        return await asyncio.to_thread(from_gnu, done.stdout)

    async def _import_tar(self, data: bytes) -> None:
        session = self._session()
        async with session.lock:
            data = await asyncio.to_thread(to_gnu, data)
            await self._harness(IMPORT, session.shell_pid or "none", stdin=data, what="import the workspace")

    async def _harness(self, script: str, *args: str, stdin: bytes | None = None, user: str = "0:0",
                       what: str, ok: tuple[int, ...] = (0,)) -> ExecResult:
        if self.container is None:
            raise SandboxError("the docker sandbox is not running (closed, or its start failed)")
        done = await run_script(docker_client(), self.container.id, script, *args, user=user, stdin=stdin)
        if done.exit_code not in ok:
            raise SandboxError(f"could not {what}: {done.why()}")
        return done

    # ------------------------------------------------------------------ harness: file tools

    async def read_file(self, path: str, max_bytes: int | None = None) -> str:
        """Text of a workspace file (UTF-8, undecodable bytes replaced), at most ``max_bytes``.

        Read by a harness process, so it sees the file whatever its mode; a FIFO, socket or
        device is refused (reading one could block or never end). Raises as ``Sandbox.read_file``.
        """
        full = checked_path(self.resolve(path))
        cap = min(max_bytes or self.limits.output_bytes, self.limits.output_bytes)
        done = await self._harness_file_op(READ_FILE, path, full, str(int(cap)))
        return done.stdout.decode("utf-8", "replace")

    async def read_files(self, paths: list[str], max_bytes: int | None = None) -> dict[str, str | Exception]:
        """``read_file`` of every path in one harness exec (see ``Sandbox.read_files``)."""
        if not paths:
            return {}
        cap = min(max_bytes or self.limits.output_bytes, self.limits.output_bytes)
        args: list[str] = [str(int(cap))]
        early: dict[str, str | Exception] = {}
        for path in paths:
            try:
                args += [path, checked_path(self.resolve(path))]
            except (PathOutsideWorkspace, ValueError) as exc:
                early[path] = exc
        await self._ensure_started()
        done: ExecResult = await self._call(self._harness_file_exec, READ_FILES, tuple(args), None, "0:0")
        if done.exit_code != 0:
            raise SandboxError(f"could not read the files: {done.why()}")
        read = parse_reads(done.stdout, [p for p in paths if p not in early])
        return {path: early[path] if path in early else read[path] for path in paths}

    async def write_file(self, path: str, content: str) -> int:
        """Create or overwrite a workspace file as the model's uid; a short or failed write raises ``OSError``."""
        if not isinstance(content, str):
            raise TypeError(f"content must be a string, got {type(content).__name__}")
        full = checked_path(self.resolve(path))
        data = content.encode("utf-8", "surrogateescape")
        await self._harness_file_op(WRITE_FILE, path, full, str(len(data)), stdin=data, user=MODEL_USER)
        return len(data)

    async def list_dir(self, path: str = ".") -> list[str]:
        """Names in a workspace directory, sorted by their bytes; directories end with ``/``.

        Names are exact whatever bytes they hold (newlines included); bytes that are not UTF-8
        show as ``\\xHH``.
        """
        full = checked_path(self.resolve(path))
        done = await self._harness_file_op(LIST_DIR, path, full)
        return parse_listing(done.stdout)

    async def _harness_file_op(self, script: str, path: str, *args: str, stdin: bytes | None = None, user: str = "0:0") -> ExecResult:
        await self._ensure_started()
        done: ExecResult = await self._call(self._harness_file_exec, script, args, stdin, user)
        if done.exit_code == 0:
            return done
        raise file_error(path, done.why())

    async def _harness_file_exec(self, script: str, args: tuple[str, ...], stdin: bytes | None, user: str) -> ExecResult:
        if self.container is None:
            raise SandboxError("the docker sandbox is not running (closed, or its start failed)")
        return await run_script(docker_client(), self.container.id, script, *args, user=user, stdin=stdin, timeout_s=60.0)

    def _session(self) -> DockerSession:
        if self.session is None:
            raise SandboxError("the docker sandbox is not running (closed, or its start failed)")
        return self.session


def _capped(kept: bytes, size: int, cap: int) -> str:
    """``kept`` (the first ``cap`` of ``size`` bytes) as text, with the truncation marker when cut."""
    text = kept[:cap].decode("utf-8", "replace")
    return text + TRUNCATION_MARKER.format(cut=size - cap) if size > cap else text


def set_pids_limit(container_id: str, pids: int) -> None:
    """Change a running container's pids limit.

    docker-py's ``Container.update`` takes no pids argument (it raised ``TypeError`` here, so a
    fork bomb's reset never got its lent pids); the Engine API's update does (``PidsLimit``,
    API 1.40+), so it is called directly.
    """
    api = docker_client().api
    response = api._post_json(api._url("/containers/{0}/update", container_id), data={"PidsLimit": pids})
    api._raise_for_status(response)


def _remove(container: Any) -> None:
    import docker.errors

    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass  # already gone (removed by hand, or by auto_remove)
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: auto_remove is already removing it
            raise


def live_containers(owner: int | None = None) -> list[Any]:
    """Containers of this backend still present (running or not), for leak counts and cleanup.

    Args:
        owner: Only those started by this pid (other processes may share the daemon).
    """
    label = LABEL if owner is None else f"{OWNER}={owner}"
    return docker_client().containers.list(all=True, filters={"label": label})
