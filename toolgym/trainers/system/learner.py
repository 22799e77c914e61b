"""Learners: the update half of a GRPO or PPO iteration, in the driver's process or on Ray Train workers.

Every learner rank runs the in-process trainer's own update (``grpo.update_policy`` with a
``GRPOTrainer``'s optimizer, loss settings and shuffling generator), so an update on Ray is
the same computation as ``toolgym train`` in one process. For PPO each rank holds a
``PPOTrainer``: the value model lives on the learners, which receive the iteration's scored
rows (``Collected``), compute the values and GAE advantages themselves (every rank the same:
their weights are equal), then update policy and value together.

Data parallelism: with ``W`` learners, rank ``r`` back-propagates micro-batches ``r, r+W, ...``
of every minibatch, each loss already divided by the whole minibatch's token or sequence
count (``batch.Share``); ``SummedStep`` then sums the gradients over the ranks with one
all-reduce (gloo on CPU, NCCL on GPU) before the shared optimizer step. The sum equals the
one-learner gradient of the same global minibatch, up to float summation order. (DDP's own
hook averages, which would divide every loss by W; summing keeps the losses as written.)

* ``LocalLearner``: one rank in the driver's process (``system.learner_backend: local``).
* ``RayTrainLearner``: ``system.learners`` ranks under Ray Train's ``TorchTrainer``, driven
  through a ``Mailbox`` actor: the driver sends a command (update, state, load, stop), every
  rank answers; rank 0's update answer carries the new weights as an object-store reference
  that the weight sync hands on to the inference workers without another copy.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from toolgym.errors import ToolgymError
from toolgym.trainers import metrics as m
from toolgym.trainers.batch import Batch
from toolgym.trainers.config import TrainConfig
from toolgym.trainers.experience import Collected
from toolgym.trainers.grpo import GRPOTrainer, update_policy
from toolgym.trainers.ppo import PPOTrainer
from toolgym.trainers.step import OptimizerStep, SkipReason, UpdateStats
from toolgym.trainers.system.cluster import role_threads


class SummedStep(OptimizerStep):
    """An ``OptimizerStep`` whose gradients are first summed over the data-parallel ranks.

    One all-reduce per step carries every gradient, a "has a gradient" flag per parameter (a
    parameter no rank touched keeps ``grad=None``, so AdamW skips it exactly as with one
    learner) and a skip flag (a rank whose loss was not finite makes every rank skip).
    """

    _inside = False

    def step(self) -> SkipReason | None:
        if not self._all_reduce(skip=False):
            return super().skip("nonfinite_loss", "(on another learner)")
        self._inside = True
        try:
            return super().step()
        finally:
            self._inside = False

    def skip(self, reason: SkipReason, detail: str = "") -> SkipReason:
        if not self._inside:  # the caller skips before stepping: the other ranks still reduce with us
            self._all_reduce(skip=True)
        return super().skip(reason, detail)

    def _all_reduce(self, *, skip: bool) -> bool:
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        has = torch.tensor([float(p.grad is not None) for p in self.params])
        flat = torch.cat([g.reshape(-1) for g in grads] + [has, torch.tensor([float(skip)])])
        dist.all_reduce(flat)
        if flat[-1] > 0:
            return False
        offset = 0
        for p, g, touched in zip(self.params, grads, flat[-1 - len(self.params) : -1].tolist(), strict=True):
            p.grad = flat[offset : offset + g.numel()].view_as(p).clone() if touched else None
            offset += g.numel()
        return True


class Updater:
    """One learner rank: a ``GRPOTrainer``'s optimizer and update over its shard of each minibatch, or a ``PPOTrainer``'s."""

    def __init__(self, config: TrainConfig, model: Any, tokenizer: Any, *, rank: int = 0, world: int = 1):
        from toolgym.trainers.run import ptx_rows

        rows = ptx_rows(config, tokenizer) if config.ptx.weight > 0 and rank == 0 else None
        self.ppo = config.algorithm.name == "ppo"
        self.trainer: Any = (PPOTrainer if self.ppo else GRPOTrainer)(config, model, tokenizer, ptx_rows=rows)
        self.trainer.sampler.close()  # the learner never generates
        self.trainer.shard = self.rank, self.world = rank, world
        if world > 1:  # the policy's and (PPO) the value model's gradients, summed over the ranks
            o, old = config.optim, self.trainer.step
            self.trainer.step = SummedStep(old.optimizers, params=old.params, max_grad_norm=o.max_grad_norm, skip_grad_norm=o.skip_grad_norm)

    def update(self, work: Batch | Collected, lr_factor: float) -> dict[str, float]:
        """``update_policy`` over this rank's share at this iteration's learning rate; metrics of the whole batch.

        GRPO gets the driver's ``Batch``; PPO the scored rows (``Collected``), whose GAE advantages
        need this learner's value model (the row counts then come back with the metrics).
        """
        t, o = self.trainer, self.trainer.config.optim
        t.step.set_lr_factor(lr_factor)
        if self.ppo:
            if not isinstance(work, Collected):
                raise TypeError(f"a PPO learner updates from the scored rows (Collected), got {type(work).__name__}")
            batch, counts = t.build_batch(work)  # values and GAE from the pre-update value model, as PPOTrainer does
            return {m.LR: t.step.lr, **counts, **(self._whole(t.update_stats(batch)) if batch is not None else {})}
        if not isinstance(work, Batch):
            raise TypeError(f"a GRPO learner updates from a Batch, got {type(work).__name__}")
        stats = update_policy(
            t.model, t.step, work, t.settings, minibatch_size=o.minibatch_size, micro_batch_size=o.micro_batch_size,
            epochs=o.epochs, generator=t.generator, ref_model=t.ref_model, ptx_batches=t.ptx_batches,
            after_step=t._qk_report, shard=(self.rank, self.world),
        )
        return {m.LR: t.step.lr, **self._whole(stats)}

    def _whole(self, stats: UpdateStats) -> dict[str, float]:
        """The metrics of the whole batch: each rank holds its share of every summed term, so add them up."""
        if self.world > 1:
            import torch.distributed as dist

            parts: list[Any] = [None] * self.world
            dist.all_gather_object(parts, dict(stats.sums))
            total: Counter[str] = Counter()
            for part in parts:
                total.update(part)  # update() keeps negative and zero sums (Counter's + would drop them)
            stats.sums = total
        return stats.metrics()

    def state(self) -> dict[str, Any]:
        """Model tensors, optimizer state and the shuffling generator (what a checkpoint needs); PPO's value model too."""
        t = self.trainer
        out = {"model": t.model.state_dict(), "optimizer": t.optimizer.state_dict(), "generator": t.generator.get_state()}
        if self.ppo:
            out.update(value=t.value.state_dict(), value_optimizer=t.value_optimizer.state_dict())
        return out

    def load(self, state: dict[str, Any]) -> None:
        """Restore any of the parts ``state`` returns."""
        t = self.trainer
        if "model" in state:
            t.model.load_state_dict(state["model"])
        if "optimizer" in state:
            t.optimizer.load_state_dict(state["optimizer"])
        if "generator" in state:
            t.generator.set_state(state["generator"])
        if self.ppo and "value" in state:
            t.value.load_state_dict(state["value"])
        if self.ppo and state.get("value_optimizer") is not None:
            t.value_optimizer.load_state_dict(state["value_optimizer"])


class LocalLearner:
    """One learner in the driver's process, training the driver's own model object."""

    def __init__(self, config: TrainConfig, model: Any, tokenizer: Any):
        self.updater = Updater(config, model, tokenizer)

    def update(self, work: Batch | Collected, lr_factor: float) -> tuple[dict[str, float], dict[str, Any]]:
        """Metrics and the new weights."""
        metrics = self.updater.update(work, lr_factor)
        return metrics, {k: v.detach().clone() for k, v in self.updater.trainer.model.state_dict().items()}

    def state(self) -> dict[str, Any]:
        return self.updater.state()

    def load(self, state: dict[str, Any]) -> None:
        self.updater.load(state)

    def close(self) -> None:
        pass


class LearnerDied(ToolgymError, RuntimeError):
    """A learner rank was killed or failed, so the update did not happen; resume the run from its last checkpoint.

    ``toolgym train`` prints the message (which names the role and rank when known) and exits 2;
    ``toolgym train CONFIG --resume`` then redoes the iteration from the last checkpoint.
    """

    role = "learner"
    """The role that failed (every system fault names one)."""

    def __init__(self, message: str, *, rank: int | None = None):
        super().__init__(message)
        self.rank = rank
        """The failed rank, when a rank reported its own failure; None when the whole group stopped."""


class Mailbox:
    """Commands to the learner ranks and their answers (a Ray async actor)."""

    def __init__(self, world: int):
        import asyncio

        self.inboxes: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(world)]
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()

    async def send(self, command: Any) -> None:
        for box in self.inboxes:
            box.put_nowait(command)

    async def receive(self, rank: int) -> Any:
        return await self.inboxes[rank].get()

    async def reply(self, rank: int, answer: Any) -> None:
        self.outbox.put_nowait((rank, answer))

    async def collect(self) -> Any:
        return await self.outbox.get()


def learner_loop(cfg: dict[str, Any]) -> None:
    """The body of each Ray Train worker: build an ``Updater``, then serve the mailbox's commands."""
    import ray
    import ray.train
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ctx = ray.train.get_context()
    rank, world, box = ctx.get_world_rank(), ctx.get_world_size(), cfg["mailbox"]
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    config = TrainConfig.from_dict(cfg["config"])
    model = AutoModelForCausalLM.from_pretrained(cfg["model_dir"], dtype=getattr(torch, config.model.dtype))
    updater = Updater(config, model, AutoTokenizer.from_pretrained(cfg["model_dir"]), rank=rank, world=world)
    ray.get(box.reply.remote(rank, ("ready", (os.getpid(), ray.get_runtime_context().get_node_id()))))
    while True:
        kind, *args = ray.get(box.receive.remote(rank))
        args = [ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in args]  # batches and states travel by reference
        if kind == "stop":
            ray.get(box.reply.remote(rank, ("stopped", None)))
            return
        try:
            if kind == "update":
                metrics = updater.update(args[0], args[1])
                # Rank 0 puts the new weights in the object store once; the weight sync passes the reference on.
                answer: Any = (metrics, ray.put(model.state_dict()) if rank == 0 else None)
            elif kind == "state":
                answer = updater.state() if rank == 0 else None
            else:  # "load"
                updater.load(args[0])
                answer = None
            ray.get(box.reply.remote(rank, ("ok", answer)))
        except Exception as exc:  # reported to the driver, which raises LearnerDied with it
            ray.get(box.reply.remote(rank, ("error", f"{type(exc).__name__}: {exc}")))


class RayTrainLearner:
    """``system.learners`` data-parallel ranks under Ray Train's ``TorchTrainer``.

    Args:
        config: The run's config (``system.learners``, ``learner_cpus``/``learner_gpus``, ``resources["learner"]``).
        model_dir: A model folder holding the starting weights (the driver writes it).
        storage: Ray Train's storage folder (its run records; checkpoints are the driver's).
        ready_timeout_s: Deadline for every rank to build its model.
    """

    def __init__(self, config: TrainConfig, model_dir: str, storage: str, *, ready_timeout_s: float = 600.0):
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        s = config.system
        self.world = s.learners
        self.mailbox: Any = ray.remote(Mailbox).options(num_cpus=0).remote(self.world)
        per_worker = {"CPU": s.learner_cpus, **({"GPU": s.learner_gpus} if s.learner_gpus else {}), **s.resources.get("learner", {})}
        self.trainer = TorchTrainer(
            learner_loop,
            train_loop_config={"config": config.model_dump(mode="json"), "model_dir": model_dir, "mailbox": self.mailbox,
                               "threads": role_threads(s, "learner")},
            torch_config=TorchConfig(backend="nccl" if s.learner_gpus else "gloo"),
            scaling_config=ScalingConfig(num_workers=self.world, use_gpu=s.learner_gpus > 0, resources_per_worker=per_worker),
            run_config=RunConfig(storage_path=storage, name="learners"),
        )
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._fit, daemon=True, name="toolgym-learners")
        self.thread.start()
        ready = self._answers(timeout_s=ready_timeout_s)
        self.pids: list[int] = [pid for pid, _ in ready]
        """Process id of each rank (to name a dead rank or, in the fault tests, kill one)."""
        self.nodes: list[str] = [node for _, node in ready]
        """Ray node id of each rank: a rank's process can be checked from here when it shares the driver's node."""

    def _fit(self) -> None:
        try:
            self.trainer.fit()
        except BaseException as exc:  # a killed or failing rank ends fit(); the driver reports it
            self.failure = exc

    def _answers(self, timeout_s: float = 3600.0) -> list[Any]:
        """One answer per rank, by rank; ``LearnerDied`` when the group stopped or a rank failed."""
        import ray

        answers: dict[int, Any] = {}
        deadline = time.monotonic() + timeout_s
        pending = self.mailbox.collect.remote()
        died: list[int] = []  # ranks in the order they were first seen dead: Ray Train then stops the survivors too
        while len(answers) < self.world:
            ready, _ = ray.wait([pending], timeout=0.25)
            if ready:
                rank, (status, value) = ray.get(pending)
                if status == "error":  # a rank whose peer died fails in the all-reduce: blame the dead one
                    dead = died or self._dead_ranks(grace_s=2.0)
                    culprit = dead[0] if dead else rank
                    why = f"died (rank {rank} then failed: {value})" if dead else f"failed: {value}"
                    raise LearnerDied(f"learner rank {culprit} {why}; resume the run from its last checkpoint "
                                      "(toolgym train CONFIG --resume)", rank=culprit)
                answers[rank] = value
                if len(answers) < self.world:
                    pending = self.mailbox.collect.remote()
                continue
            died += [r for r in self._dead_ranks() if r not in died]
            if not self.thread.is_alive() or time.monotonic() > deadline:
                cause = self.failure or "no answer before the deadline"
                culprit = died[0] if len(died) == 1 else _failed_rank(str(cause))
                who = f"learner rank {culprit} died and " if culprit is not None else ""
                raise LearnerDied(f"{who}the learner group ({self.world} rank(s)) stopped: {cause}; resume the run from its "
                                  "last checkpoint (toolgym train CONFIG --resume)", rank=culprit)
        return [answers[r] for r in range(self.world)]

    def _dead_ranks(self, grace_s: float = 0.0) -> list[int]:
        """Ranks on this node whose process is gone (waiting up to ``grace_s`` for a dying one); [] before ``ready``."""
        import ray

        here = ray.get_runtime_context().get_node_id()
        local = [r for r, node in enumerate(getattr(self, "nodes", [])) if node == here]
        deadline = time.monotonic() + grace_s
        while True:
            dead = [r for r in local if not _alive(self.pids[r])]
            if dead or time.monotonic() >= deadline:
                return dead
            time.sleep(0.05)

    def _command(self, *command: Any) -> list[Any]:
        import ray

        ray.get(self.mailbox.send.remote(command))
        return self._answers()

    def update(self, work: Batch | Collected, lr_factor: float) -> tuple[dict[str, float], Any]:
        """Metrics and an object-store reference to the new weights."""
        import ray

        metrics, state_ref = self._command("update", ray.put(work), lr_factor)[0]
        return metrics, state_ref

    def state(self) -> dict[str, Any]:
        return dict(self._command("state")[0])

    def load(self, state: dict[str, Any]) -> None:
        import ray

        self._command("load", ray.put(state))

    def close(self) -> None:
        if self.thread.is_alive():
            try:
                self._command("stop")
            except LearnerDied:
                pass
            self.thread.join(timeout=60)
        import ray

        ray.kill(self.mailbox, no_restart=True)


def _failed_rank(message: str) -> int | None:
    """The one rank Ray Train's failure message names ("[Rank 1 Error Snippet]"), or None when it names none or several.

    The fallback when the ranks' processes cannot tell (on another node, or all gone by the time
    the driver looked: Ray Train stops the survivors after the first failure).

    >>> _failed_rank("Training failed due to worker errors:\\n[Rank 1 Error Snippet]:\\nA worker health check failed.")
    1
    """
    import re

    ranks = {int(r) for r in re.findall(r"\[Rank (\d+) Error", message)}
    return ranks.pop() if len(ranks) == 1 else None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a killed rank not yet reaped, a zombie, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:  # Linux: the state letter follows the command name in parentheses
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
