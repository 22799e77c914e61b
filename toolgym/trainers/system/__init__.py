"""The RL system: GRPO or PPO with env actors, inference workers and learners placed on Ray.

* ``driver``: ``SystemTrainer``, the iteration (rollouts, scores, advantages, update, weight sync),
  sync or asynchronous with bounded staleness; built by ``toolgym train`` when ``system.mode`` is
  ``sync`` or ``async``;
* ``inference``: engines (HF in-process, OpenAI-compatible servers), the ``InferenceWorker`` actor
  and the driver's ``WorkerPolicy``;
* ``learner``: data-parallel learners (local, or Ray Train ``TorchTrainer`` ranks; PPO's value model lives there);
* ``weights``: versioned weight sync through the object store;
* ``staleness``: per-token policy versions and the staleness bound;
* ``fork``: ``ForkingPool``, the K siblings of a task forked from one reset;
* ``cluster``: joining Ray, placement checks and the env pool of a run.

Nothing here is imported by ``import toolgym``; Ray and torch load when a system run starts.
See ``docs/rl_system.md``.
"""
