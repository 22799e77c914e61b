"""Simulated API environments: a typed domain state, tools that read and write it, a policy.

``Domain`` + ``StateModel`` define a domain natively; ``ApiEnv.from_class`` wraps an
existing class; ``Draft`` + ``seeded_task`` generate its seeded tasks. Shipped domains live
in ``toolgym.envs.catalog`` (retail, calendar_email, banking).
"""

from toolgym.envs.api.barrier import ReadOnlyWrite, reading
from toolgym.envs.api.binding import AttrBinding, ModelBinding, StateBinding
from toolgym.envs.api.domain import Domain, NotFound, PolicyViolation, StateModel
from toolgym.envs.api.drafts import Draft, seeded_task
from toolgym.envs.api.env import ApiEnv, system_prompt_with_policy
from toolgym.envs.api.wrap import from_class, jsonable

__all__ = [
    "ApiEnv",
    "AttrBinding",
    "Domain",
    "Draft",
    "ModelBinding",
    "NotFound",
    "PolicyViolation",
    "ReadOnlyWrite",
    "StateBinding",
    "StateModel",
    "from_class",
    "jsonable",
    "reading",
    "seeded_task",
    "system_prompt_with_policy",
]
