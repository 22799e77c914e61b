"""``RayEnvPool``: environments on Ray actors, with the same interface as the local pool.

>>> pool = RayEnvPool(actors=2)                                    # doctest: +SKIP
>>> episodes = run_episodes("toolgym/unitconv-v0", policy, n=1000, pool=pool)  # doctest: +SKIP

Each episode is pinned to one actor for its whole life (its env lives there). The steps that
the loop's episodes ask for within one tick of the event loop are gathered per actor into one
``step_many`` call; at most ``max_inflight`` calls per actor are outstanding (backpressure:
what waits meanwhile joins the next, larger batch) and every call has a deadline.

Failure policy: an actor that dies (killed, OOM, a segfault in tool code) fails only the
episodes pinned to it, each with an ``EnvActorDied`` env failure. The loop then retries those
episodes from the start with the same seeds (``env_retries``), on a replacement actor the pool
starts in the dead one's slot (at most ``max_replacements`` per slot; after that the slot is
dropped and episodes go to the live ones). A call past its deadline fails its episodes with
``EnvCallTimeout``, handled the same way. Nothing is ever silently scored 0.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolgym.envs.env import EnvSnapshot, ToolEnv
from toolgym.envs.types import Observation
from toolgym.errors import ConfigError, EnvError
from toolgym.rollouts.env_actor import EnvActor, fast_pickling
from toolgym.rollouts.pool import StepOut
from toolgym.rollouts.ray_cluster import check_resources, connect, wait_ready


class EnvActorDied(EnvError):
    """The actor hosting an episode's env died; the episode can be retried on another."""


class EnvCallTimeout(EnvError):
    """An actor did not answer a call within the pool's ``call_timeout_s``."""


class RayPoolConfig(BaseModel):
    """How many env actors to start and what each may use."""

    model_config = ConfigDict(extra="forbid")

    actors: int = Field(2, ge=1)
    """Env actors to start; each hosts any number of envs."""
    num_cpus: float = Field(1.0, ge=0)
    """CPUs reserved per actor (one Python process uses about one core)."""
    memory: int | None = Field(None, ge=0)
    """Memory reserved per actor, in bytes (Ray schedules on it; None: no reservation)."""
    resources: dict[str, float] = Field(default_factory=dict)
    """Custom resources per actor, e.g. ``{"sandbox_host": 1}`` to land on sandbox nodes."""
    max_inflight: int = Field(16, ge=1)
    """Calls outstanding per actor at once; further requests wait and join the next batch."""
    max_batch: int = Field(160, ge=1)
    """Most env requests in one actor call. Small enough that replies (a step's 5-tuple pickles
    to ~450 bytes for unitconv) stay under Ray's 100 KiB inline limit: larger ones go through
    the object store, which measured 2-3x slower at 10,000 envs (``benchmarks/rollout_scale.py``)."""
    call_timeout_s: float = Field(120.0, gt=0)
    """Deadline of one actor call; past it the episodes in the call fail with ``EnvCallTimeout``."""
    ready_timeout_s: float = Field(120.0, gt=0)
    """Deadline for the actors to start and build a first env."""
    max_replacements: int = Field(3, ge=0)
    """Replacement actors started per slot after deaths before the slot is dropped."""
    address: str | None = None
    """Ray cluster to join (``"auto"``, ``host:port``, ``ray://host:port``); None starts Ray locally."""
    runtime_env: dict[str, Any] | None = None
    """Ray ``runtime_env`` for the actors, e.g. ``{"working_dir": "."}`` to ship user code."""
    gc_policy: str = "deferred"
    """Actor-side cyclic GC policy ("deferred" or "default"; see ``EnvActor``)."""


@dataclass(frozen=True, slots=True)
class EnvHandle:
    """Where one episode's env lives: its key on the actor in ``slot`` of ``generation``.

    Opaque to the episode loop, which reads nothing from an env but what its calls return.
    """

    key: int
    slot: int
    generation: int


class _Lane:
    """One actor's request queue: gathers requests per method and tick, bounded in flight."""

    def __init__(self, handle: Any, cfg: RayPoolConfig) -> None:
        self.handle, self.cfg = handle, cfg
        self.loop = asyncio.get_running_loop()
        self.pending: dict[str, list[tuple[Any, asyncio.Future[Any]]]] = {}
        self.gate = asyncio.Semaphore(cfg.max_inflight)
        self.scheduled = False
        self.dead: BaseException | None = None

    def submit(self, method: str, payload: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.loop.create_future()
        if self.dead is not None:
            fut.set_exception(EnvActorDied(str(self.dead)))
            return fut
        self.pending.setdefault(method, []).append((payload, fut))
        if not self.scheduled:  # flush after every episode woken this tick has queued its request
            self.scheduled = True
            self.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self.scheduled = False
        for method in list(self.pending):
            self.loop.create_task(self._drain(method))

    async def _drain(self, method: str) -> None:
        async with self.gate:
            queue = self.pending.get(method, [])
            batch, self.pending[method] = queue[: self.cfg.max_batch], queue[self.cfg.max_batch :]
            if self.pending[method]:
                self.loop.call_soon(self._flush)
            if not batch:
                return
            futures = [f for _, f in batch]
            try:
                ref = getattr(self.handle, method).remote([p for p, _ in batch])
                replies = await asyncio.wait_for(_as_future(ref), self.cfg.call_timeout_s)
            except TimeoutError:
                _fail(futures, EnvCallTimeout(f"actor call {method} did not answer within {self.cfg.call_timeout_s:g}s"))
                return
            except Exception as exc:
                from ray.exceptions import RayActorError

                if isinstance(exc, RayActorError):  # died, OOM-killed, unreachable: the actor is gone
                    self.dead = exc
                    _fail(futures, EnvActorDied(f"{type(exc).__name__}: {str(exc)[:300]}"))
                else:  # e.g. a payload that does not pickle: these episodes fail, the actor stays
                    _fail(futures, EnvError(f"actor call {method} failed: {type(exc).__name__}: {str(exc)[:300]}"))
                return
            for fut, reply in zip(futures, replies, strict=True):
                if fut.done():
                    continue
                if isinstance(reply, BaseException):
                    fut.set_exception(reply)
                else:
                    fut.set_result(reply)


def _as_future(ref: Any) -> asyncio.Future[Any]:
    return asyncio.wrap_future(ref.future())


def _fail(futures: list[asyncio.Future[Any]], exc: BaseException) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(exc)


class RayEnvPool:
    """Envs sharded across Ray env actors; pass it to ``run_episodes(..., pool=...)``.

    Args:
        config: A ``RayPoolConfig``; keyword arguments override its fields
            (``RayEnvPool(actors=4, num_cpus=0.5)``).

    The actors start at ``bind`` (``run_episodes`` calls it before any episode) and live
    until ``shutdown`` (or the end of a ``with`` block), so one pool serves many rollouts.
    """

    def __init__(self, config: RayPoolConfig | None = None, **overrides: Any) -> None:
        self.cfg = (config or RayPoolConfig()).model_copy(update=overrides) if overrides else (config or RayPoolConfig())
        if overrides:
            self.cfg = RayPoolConfig.model_validate(self.cfg.model_dump())  # validate the overrides too
        self.env_id = ""
        self._factory: Callable[[], ToolEnv] | None = None
        self._actors: list[Any | None] = []
        self._generation: list[int] = []
        self._replacements: list[int] = []
        self._load: list[int] = []
        self._lanes: dict[int, _Lane] = {}
        self._lanes_loop: asyncio.AbstractEventLoop | None = None
        self._slot_locks: dict[int, asyncio.Lock] = {}
        self._keys = itertools.count()
        self.deaths = 0
        """Actor deaths seen so far (each one replaced or its slot dropped)."""

    # ------------------------------------------------------------------ lifecycle

    def bind(self, env_id: str, factory: Callable[[], ToolEnv]) -> None:
        """Start the actors (once) and prove each can build the env; errors before any work."""
        if self._actors and env_id == self.env_id:
            return
        if self._actors:
            self.shutdown()
        self.env_id, self._factory = env_id, factory
        fast_pickling()
        connect(self.cfg)
        check_resources(self.cfg)
        self._actors = [self._new_actor() for _ in range(self.cfg.actors)]
        self._generation = [0] * self.cfg.actors
        self._replacements = [0] * self.cfg.actors
        self._load = [0] * self.cfg.actors
        wait_ready(self._actors, self.cfg, env_id)

    def shutdown(self) -> None:
        """Kill the actors (their envs go with them)."""
        import ray

        for actor in self._actors:
            if actor is not None:
                ray.kill(actor, no_restart=True)
        self._actors, self._lanes, self.env_id = [], {}, ""

    def __enter__(self) -> RayEnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def actor_handles(self) -> list[Any]:
        """The live actor handles by slot (tests kill one to prove fault tolerance)."""
        return [a for a in self._actors if a is not None]

    def actor_stats(self) -> list[dict[str, Any]]:
        """Each live actor's env counts and resident memory."""
        import ray

        return ray.get([a.stats.remote() for a in self.actor_handles], timeout=self.cfg.call_timeout_s)

    # ------------------------------------------------------------------ EnvPool interface

    async def acquire(self) -> EnvHandle:
        if self._factory is None:
            raise ConfigError("RayEnvPool.acquire() before bind(): pass the pool to run_episodes, which binds it")
        slot = await self._live_slot()
        self._load[slot] += 1
        return EnvHandle(next(self._keys), slot, self._generation[slot])

    async def reset(self, env: EnvHandle, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, dict[str, Any]]:
        return await self._call(env, "reset_many", (env.key, seed, options))

    async def step(self, env: EnvHandle, action: str) -> StepOut:
        return await self._call(env, "step_many", (env.key, action))

    async def digest(self, env: EnvHandle) -> str:
        return await self._call(env, "digest_many", env.key)

    async def snapshot(self, env: EnvHandle) -> EnvSnapshot:
        return await self._call(env, "snapshot_many", env.key)

    async def restore(self, env: EnvHandle, snap: EnvSnapshot) -> None:
        await self._call(env, "restore_many", (env.key, snap))

    async def close(self, env: EnvHandle, *, reuse: bool = True) -> None:
        self._load[env.slot] = max(0, self._load[env.slot] - 1)
        if self._actors[env.slot] is None or self._generation[env.slot] != env.generation:
            return  # its actor is gone, and the env with it
        try:
            await self._lane(env.slot).submit("close_many", (env.key, reuse))
        except EnvError:
            pass  # the actor died meanwhile: nothing left to close

    async def aclose(self) -> None:
        """Run the actors' deferred garbage collection (the actors and idle envs stay)."""
        await asyncio.gather(*(_as_future(a.collect.remote()) for a in self.actor_handles), return_exceptions=True)

    # ------------------------------------------------------------------ internals

    def _new_actor(self) -> Any:
        import ray

        options: dict[str, Any] = {"num_cpus": self.cfg.num_cpus, "max_restarts": 0, "max_concurrency": 1000}
        if self.cfg.memory is not None:
            options["memory"] = self.cfg.memory
        if self.cfg.resources:
            options["resources"] = dict(self.cfg.resources)
        if self.cfg.runtime_env is not None and self.cfg.address is not None:
            options["runtime_env"] = self.cfg.runtime_env
        return ray.remote(EnvActor).options(**options).remote(self._factory, self.cfg.gc_policy)

    def _lane(self, slot: int) -> _Lane:
        loop = asyncio.get_running_loop()
        if self._lanes_loop is not loop:  # run_episodes runs each rollout in a fresh event loop
            self._lanes, self._slot_locks, self._lanes_loop = {}, {}, loop
        lane = self._lanes.get(slot)
        if lane is None or lane.handle is not self._actors[slot]:
            lane = self._lanes[slot] = _Lane(self._actors[slot], self.cfg)
        return lane

    async def _call(self, env: EnvHandle, method: str, payload: Any) -> Any:
        if self._actors[env.slot] is None or self._generation[env.slot] != env.generation:
            raise EnvActorDied(f"the actor hosting env {env.key} died; its episode must start again")
        return await self._lane(env.slot).submit(method, payload)

    async def _live_slot(self) -> int:
        """The least-loaded live slot, replacing dead actors first (at most once per death)."""
        while True:
            live = [s for s, a in enumerate(self._actors) if a is not None]
            if not live:
                raise EnvActorDied(f"every env actor died and the replacement budget ({self.cfg.max_replacements} per slot) is spent")
            slot = min(live, key=lambda s: self._load[s])
            lane = self._lane(slot)
            if lane.dead is None:
                return slot
            await self._replace(slot, lane)

    async def _replace(self, slot: int, lane: _Lane) -> None:
        lock = self._slot_locks.setdefault(slot, asyncio.Lock())
        async with lock:
            if self._actors[slot] is not lane.handle:
                return  # another episode replaced it already
            self.deaths += 1
            self._generation[slot] += 1
            self._load[slot] = 0
            if self._replacements[slot] >= self.cfg.max_replacements:
                self._actors[slot] = None
                return
            self._replacements[slot] += 1
            actor = self._new_actor()
            try:
                await asyncio.wait_for(_as_future(actor.ready.remote()), self.cfg.ready_timeout_s)
            except Exception:  # the replacement failed to start: drop the slot
                self._actors[slot] = None
                return
            self._actors[slot] = actor
