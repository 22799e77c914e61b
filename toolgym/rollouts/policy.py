"""The policy protocol, as seen from the rollout layer (defined in ``toolgym.policy``).

The types live in the top-level ``toolgym.policy`` module because environments use policies
too (LLM tool simulators, simulated users, task synthesis), and environments must not import
from ``toolgym.rollouts``.
"""

from toolgym.policy import Policy, PolicyError, PolicyErrorKind, PolicyRequest, PolicyTurn, SamplingParams

__all__ = ["Policy", "PolicyError", "PolicyErrorKind", "PolicyRequest", "PolicyTurn", "SamplingParams"]
