"""The ``docker`` sandbox backend: one container per sandbox, driven through the ``docker`` SDK.

Each sandbox is a container of any image (default ``toolgym/shell:bookworm``, built offline by
``make sandbox-deps``) with no network, memory/CPU/pids limits, a read-only root, all
capabilities dropped, an unprivileged user and a size-limited tmpfs at ``/workspace``.

Why one attached ``bash`` per container rather than ``docker exec`` per command: an exec costs
about 55 ms on this machine, a command written to an attached exec's socket about 0.4 ms, and the
attached shell keeps its working directory, variables and jobs for free (see
``benchmarks/shell_envs.py``). The session protocol lives in ``toolgym.envs.shell.docker_session``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import select
import socket
from typing import Any

from toolgym.envs.shell.docker_session import DockerSession
from toolgym.envs.shell.sandbox import (
    WORKSPACE,
    CommandResult,
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
USER = "1000:1000"
"""Commands run unprivileged; the workspace tmpfs is owned by this uid."""
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


class DockerSandbox(Sandbox):
    """A sandbox in a Docker container (see the module docstring for what it enforces).

    Args:
        limits: Resource limits; memory, pids and CPU become the container's cgroup limits.
        image: Any local image with bash (and tar, for snapshots).
        env: Extra environment variables of the shell.
    """

    backend = "docker"

    def __init__(self, limits: SandboxLimits | None = None, *, image: str = DEFAULT_IMAGE, env: dict[str, str] | None = None):
        super().__init__(limits)
        self.image = image
        self.env = {"HOME": "/tmp", "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin", **(env or {})}
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

    # ------------------------------------------------------------------ primitives

    async def _start(self) -> None:
        self.check_available(self.image)
        self.container = await asyncio.to_thread(self._create_container)
        try:
            self.session = DockerSession(docker_client(), self.container, self.env, self.limits.output_bytes)
            await self.session.open()
        except BaseException:
            await self._close()
            raise

    def _create_container(self) -> Any:
        lim = self.limits
        size = f"size={lim.workspace_mb}m"
        client = docker_client()
        try:
            container = client.containers.create(
                # The main process waits on stdin, which this process holds through an attach
                # socket (the tether): if this process dies, even by SIGKILL, the socket closes,
                # the keeper exits and auto_remove deletes the container. No leak after a crash.
                self.image, ["head", "-c1"], stdin_open=True, auto_remove=True, init=True,  # docker-init reaps orphans
                # The keeper runs as root without capabilities: the sandbox user (uid 1000, every
                # exec) cannot signal it, so even `kill -9 -1` inside leaves the container up.
                network_mode="none", read_only=True, working_dir=WORKSPACE,
                tmpfs={WORKSPACE: f"{size},exec,uid=1000,gid=1000,mode=0755", "/tmp": f"{size},exec,mode=1777"},  # exec: ./script.sh
                mem_limit=f"{lim.memory_mb}m", memswap_limit=f"{lim.memory_mb}m", pids_limit=lim.pids,
                nano_cpus=int(lim.cpu_quota * 1e9), cap_drop=["ALL"], security_opt=["no-new-privileges"],
                ipc_mode="private", hostname="sandbox", environment=self.env, labels={LABEL: "1", OWNER: str(os.getpid())},
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

    async def _run(self, command: str, timeout_s: float) -> CommandResult:
        return await self._session().run(command, timeout_s)

    async def _reset_session(self) -> None:
        session = self._session()
        async with session.lock:
            await session.restart()

    # Through the session when it answers (~5 ms), else a separate exec (~60 ms).

    async def _export_tar(self) -> bytes:
        session = self._session()
        async with session.lock:
            done = await session.internal(f"/usr/bin/tar -C {WORKSPACE} --numeric-owner -cf - . | /usr/bin/base64 -w0")
        if done is not None:
            return base64.b64decode(done.stdout)
        return await session.exec_bytes(["tar", "-C", WORKSPACE, "--numeric-owner", "-cf", "-", "."])

    async def _import_tar(self, data: bytes) -> None:
        session = self._session()
        # Clear first: the archive replaces the workspace, files it lacks must go.
        clear = f"/usr/bin/find {WORKSPACE} -mindepth 1 -delete && "
        async with session.lock:
            encoded = base64.b64encode(data).decode()
            done = await session.internal(f"{clear}printf %s {encoded} | /usr/bin/base64 -d | /usr/bin/tar -C {WORKSPACE} --no-same-owner -xf -")
        if done is None:
            await session.exec_bytes(["bash", "-c", f"{clear}tar -C {WORKSPACE} --no-same-owner -xf -"], stdin=data)

    def _session(self) -> DockerSession:
        if self.session is None:
            raise SandboxError("the docker sandbox is not running (closed, or its start failed)")
        return self.session

    async def _close(self) -> None:
        session, container, tether = self.session, self.container, self.tether
        self.session = self.container = self.tether = None
        if session is not None:
            session.detach()
        if container is not None:
            await asyncio.to_thread(_remove, container)
        if tether is not None:
            tether.close()


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
