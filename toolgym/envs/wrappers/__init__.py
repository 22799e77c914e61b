"""Wrappers that change one thing about an environment (gymnasium style)."""

from toolgym.envs.wrappers.faults import FaultConfig, FaultEvent, FaultInjection, FaultSpec, FaultyToolBox

__all__ = ["FaultConfig", "FaultEvent", "FaultInjection", "FaultSpec", "FaultyToolBox"]
