"""Joining a Ray cluster and checking it can host a pool, before any work starts.

Each check turns a failure that would otherwise hang or surface deep inside a rollout into a
``ConfigError`` that names the cause and the fix: an address that does not answer, resources
the cluster does not have free, actors that cannot build the environment.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from toolgym.errors import ConfigError, ToolgymError

if TYPE_CHECKING:
    from toolgym.rollouts.ray_pool import RayPoolConfig


def connect(cfg: RayPoolConfig) -> None:
    """Join ``cfg.address`` (checked to answer first) or start Ray locally, once per process."""
    import ray

    if cfg.address not in (None, "auto"):
        check_address(cfg.address)
    if ray.is_initialized():
        return
    if cfg.address is None:
        ray.init(include_dashboard=False, runtime_env=cfg.runtime_env, log_to_driver=False)
        return
    try:
        ray.init(address=cfg.address, runtime_env=cfg.runtime_env, log_to_driver=False)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        raise ConfigError(f"could not join the Ray cluster at {cfg.address!r}: {exc}. Is `ray start --head` running there?") from None


def check_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast when nothing listens at the address (ray.init would retry for minutes)."""
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise ConfigError(f"ray address {address!r} must look like 'host:port', 'ray://host:port' or 'auto'")
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers at {address!r} ({exc.strerror or exc}). Start one with `ray start --head` "
            "(it prints the address), or leave --ray-address out to start Ray on this machine."
        ) from None


def check_resources(cfg: RayPoolConfig) -> None:
    """Refuse a pool the cluster cannot place (its actors would wait forever)."""
    import ray

    wants = {"CPU": cfg.actors * cfg.num_cpus, **{k: cfg.actors * v for k, v in cfg.resources.items()}}
    if cfg.memory is not None:
        wants["memory"] = cfg.actors * cfg.memory
    total = ray.cluster_resources()
    # Actors killed a moment ago (a previous pool) hand their resources back asynchronously.
    deadline = time.monotonic() + min(cfg.ready_timeout_s, 10.0)
    while True:
        free = ray.available_resources()
        short = [name for name, need in wants.items() if need > free.get(name, 0.0) + 1e-9]
        if not short or time.monotonic() > deadline or any(wants[n] > total.get(n, 0.0) + 1e-9 for n in short):
            break
        time.sleep(0.2)
    for name, need in wants.items():
        if need > free.get(name, 0.0) + 1e-9:
            per = {"CPU": cfg.num_cpus, "memory": cfg.memory}.get(name, cfg.resources.get(name))
            raise ConfigError(
                f"the pool asks {need:g} {name} ({cfg.actors} actors x {per:g}) but the Ray cluster has "
                f"{free.get(name, 0.0):g} free of {total.get(name, 0.0):g}. Use fewer actors (--actors) or "
                f"less per actor (RayPoolConfig.num_cpus / memory / resources)."
            )


def wait_ready(actors: list[Any], cfg: RayPoolConfig, env_id: str) -> None:
    """Every actor builds one env within the deadline, or the pool is refused with the reason."""
    import ray

    try:
        ray.get([a.ready.remote() for a in actors], timeout=cfg.ready_timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise ConfigError(f"the env actors did not start within {cfg.ready_timeout_s:g}s (RayPoolConfig.ready_timeout_s)") from None
    except ray.exceptions.RayTaskError as exc:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ToolgymError):
            raise ConfigError(f"env actors cannot build {env_id!r}: {cause}") from None
        raise ConfigError(f"env actors cannot build {env_id!r}: {type(cause or exc).__name__}: {cause or exc}") from None
