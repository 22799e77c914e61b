"""Versioned weight sync: the learner's new weights reach every inference worker.

``WeightSync.publish(state, version)`` puts the ``state_dict`` into Ray's object store once
(or reuses the reference a learner put there) and hands it to every live worker: the
object store is the broadcast, each worker reads the same copy. The call returns when every
worker has the weights: installed if the worker was idle, else waiting in its pending slot to
be installed before its next batch (``InferenceWorker.load_weights``), so a publish never
waits for a running decode. It records how long it took (``system/weight_sync_s``), so the
time can be read against the parameter count (``benchmarks/train_system.py``).

A worker that dies is skipped (the generation side has already re-sent its jobs); the sync
never fails because one engine is gone, but ``dead`` says which ones are.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


def parameter_count(state: dict[str, Any]) -> int:
    """Scalars in a ``state_dict``."""
    return int(sum(t.numel() for t in state.values()))


class WeightSync:
    """Broadcast versioned weights to inference workers through the object store.

    Args:
        workers: ``InferenceWorker`` actor handles.
        dead: Indices of workers known dead (shared with the ``WorkerPolicy``).
    """

    def __init__(self, workers: Sequence[Any], dead: set[int]):
        self.workers, self.dead = list(workers), dead
        self.version = 0
        """The version every live worker has been given (each uses it from its next batch on)."""
        self.seconds: list[float] = []
        """Wall time of each publish."""

    def publish(self, state: Any, version: int) -> float:
        """Send ``state`` (a ``state_dict`` or an ``ObjectRef`` to one) as ``version``; returns the seconds taken."""
        import ray
        from ray.exceptions import RayActorError

        t0 = time.perf_counter()
        ref = state if isinstance(state, ray.ObjectRef) else ray.put(state)
        live = [w for w in range(len(self.workers)) if w not in self.dead]
        calls = {w: self.workers[w].load_weights.remote(ref, version) for w in live}
        for w, call in calls.items():
            try:
                ray.get(call)
            except RayActorError:
                self.dead.add(w)
        self.version = version
        self.seconds.append(time.perf_counter() - t0)
        return self.seconds[-1]
