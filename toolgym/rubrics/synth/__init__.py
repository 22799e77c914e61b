"""The data engine's later stages and its driver: trajectories, judging, export, ``toolgym synth``.

The early stages (seeds, tools, agents, tasks) need only environments and live in
``toolgym.envs.synth``; these stages run rollouts and rubric judges, so they live here.
Import the parts from their modules (``toolgym.rubrics.synth.pipeline.run_synth``).
"""
