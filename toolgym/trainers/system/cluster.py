"""Placing the roles: join or start Ray, and refuse placements the cluster cannot hold, before any work.

``preflight(config)`` runs before a model is loaded: it joins the cluster (``system.address``,
checked to answer first) or starts Ray locally, sums what every role asks for (env actors,
inference workers, learners, per ``system.*_cpus``/``*_gpus``/``resources``) against what the
cluster has, and asks every ``system.engine_urls`` server for a token-id completion. Each
failure is a ``ConfigError`` naming the field and the fix.
"""

from __future__ import annotations

from typing import Any

from toolgym.errors import ConfigError
from toolgym.trainers.config import SystemSection, TrainConfig


def connect(s: SystemSection) -> None:
    """Join ``s.address`` or start Ray on this machine (once per process)."""
    import ray

    from toolgym.rollouts.ray_cluster import check_address

    if ray.is_initialized():
        return
    if s.address not in (None, "auto"):
        check_address(s.address)
    if s.address is None:
        ray.init(num_cpus=s.ray_num_cpus, include_dashboard=False, log_to_driver=False)
        return
    try:
        ray.init(address=s.address, log_to_driver=False)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        raise ConfigError(f"system.address {s.address!r}: could not join the Ray cluster ({exc}); is `ray start --head` running there?") from None


def role_demands(s: SystemSection) -> dict[str, dict[str, float]]:
    """What each role asks of the cluster in total: {"env": {"CPU": ...}, "inference": ..., "learner": ...}."""
    roles = {
        "env": (s.env_actors if s.pool == "ray" else 0, {"CPU": s.env_actor_cpus}),
        "inference": (s.inference_workers, {"CPU": s.inference_cpus, "GPU": s.inference_gpus}),
        "learner": (s.learners if s.learner_backend == "ray_train" else 0, {"CPU": s.learner_cpus, "GPU": s.learner_gpus}),
    }
    out: dict[str, dict[str, float]] = {}
    for role, (count, each) in roles.items():
        wants: dict[str, float] = {}
        for name, amount in {**each, **s.resources.get(role, {})}.items():
            if amount:
                wants[name] = wants.get(name, 0.0) + count * amount
        out[role] = wants
    return out


def check_placement(s: SystemSection, total: dict[str, float]) -> None:
    """Refuse roles that ask for more of a resource than the cluster has, naming the fields to lower."""
    demands = role_demands(s)
    needed: dict[str, float] = {}
    for wants in demands.values():
        for name, amount in wants.items():
            needed[name] = needed.get(name, 0.0) + amount
    for name, need in needed.items():
        have = float(total.get(name, 0.0))
        if need > have + 1e-9:
            parts = ", ".join(f"{role} {w[name]:g}" for role, w in demands.items() if w.get(name))
            fields = {"CPU": "system.env_actor_cpus / inference_cpus / learner_cpus", "GPU": "system.inference_gpus / learner_gpus"}
            raise ConfigError(
                f"the roles ask for {need:g} {name} ({parts}) but the Ray cluster has {have:g}: lower "
                f"{fields.get(name, 'system.resources')} or the counts (system.env_actors, inference_workers, learners), "
                "or join a larger cluster (system.address / --ray-address)"
            )


def preflight(config: TrainConfig) -> None:
    """Every system check that needs no model: cluster, placement, engine URLs."""
    import ray

    s = config.system
    if s.mode == "inprocess" and s.pool == "local":
        return
    for i, url in enumerate(s.engine_urls if s.engine == "openai" else []):
        from toolgym.trainers.system.inference import check_engine_url

        check_engine_url(url, f"system.engine_urls[{i}]", routing=config.algorithm.routing_replay)
    if s.engine == "vllm" and not s.engine_urls:  # the workers start servers: the vLLM venv must be there
        from toolgym.policies.vllm_engine import vllm_python

        vllm_python()
    connect(s)
    if s.mode != "inprocess":
        check_placement(s, ray.cluster_resources())


def remote_options(s: SystemSection, role: str) -> dict[str, Any]:
    """``.options(...)`` of one actor of ``role`` ("env", "inference" or "learner")."""
    cpus = {"env": s.env_actor_cpus, "inference": s.inference_cpus, "learner": s.learner_cpus}[role]
    gpus = {"env": 0.0, "inference": s.inference_gpus, "learner": s.learner_gpus}[role]
    return {"num_cpus": cpus, "num_gpus": gpus, "resources": dict(s.resources.get(role, {}))}


def role_threads(s: SystemSection, role: str) -> int:
    """torch threads of one ``role`` process ("inference" or "learner"): its ``*_threads``, else its CPUs rounded up.

    Ray reserves CPUs but does not stop a process from using more: torch's default of one
    thread per core would let an inference worker and a learner each spread over every core,
    and overlapping them (async mode) would only time-slice the same cores.

    >>> from toolgym.trainers.config import SystemSection
    >>> role_threads(SystemSection(inference_cpus=0.5), "inference"), role_threads(SystemSection(learner_cpus=3), "learner")
    (1, 3)
    """
    import math

    threads, cpus = {"inference": (s.inference_threads, s.inference_cpus), "learner": (s.learner_threads, s.learner_cpus)}[role]
    return threads if threads is not None else max(1, math.ceil(cpus))


def env_pool(config: TrainConfig, env: Any) -> Any:
    """The run's env pool (``system.pool``), siblings forked from one reset (``system.fork_siblings``), bound now.

    Binding starts the env actors of a Ray pool and checks they can build the env: before any work.
    """
    from toolgym.rollouts.loop import _factory
    from toolgym.rollouts.pool import make_pool
    from toolgym.trainers.system.fork import ForkingPool

    s = config.system
    if s.pool == "ray":
        connect(s)
        inner = make_pool("ray", actors=s.env_actors, ray_address=s.address, num_cpus=s.env_actor_cpus,
                          resources=dict(s.resources.get("env", {})))
    else:
        inner = make_pool("local")
    pool = ForkingPool(inner, siblings=config.algorithm.group_size) if s.fork_siblings else inner
    pool.bind(*_factory(env))
    return pool


def close_pool(pool: Any) -> None:
    """Stop a pool's env actors (a Ray pool), or close its envs (a local one)."""
    import asyncio

    inner = getattr(pool, "inner", pool)
    shutdown = getattr(inner, "shutdown", None)
    if shutdown is not None:
        shutdown()
    else:
        asyncio.run(inner.aclose())
