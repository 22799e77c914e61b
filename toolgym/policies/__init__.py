"""What produces assistant turns: the policy protocol, chat rendering, local and remote models.

The layer sits between environments and rollouts. It holds the ``Policy`` protocol and its
request/turn types (defined in ``toolgym.policy`` so that environments can drive simulators and
users with a policy), scripted and chaos policies, chat rendering per model family, Hugging Face
generation and its batching scheduler, ``toolgym serve``, the OpenAI-compatible client and
schema, and the tiny model builders and tokenizers (``toolgym.policies.models``).

Nothing here imports torch, transformers or httpx until a name that needs them is used.

>>> from toolgym.policies import ScriptedPolicy, SamplingParams
>>> SamplingParams(temperature=0).temperature
0.0
"""

from typing import Any

from toolgym.policies.scripted import ChaosPolicy, ScriptedPolicy, gold_script
from toolgym.policy import Policy, PolicyError, PolicyErrorKind, PolicyRequest, PolicyTurn, SamplingParams

_LAZY = {  # these import torch, transformers or httpx when first used
    "HFPolicy": "toolgym.policies.hf_policy",
    "OpenAIPolicy": "toolgym.policies.openai_policy",
    "serve": "toolgym.policies.serve",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'toolgym.policies' has no attribute {name!r}")


__all__ = [
    "ChaosPolicy", "HFPolicy", "OpenAIPolicy", "Policy", "PolicyError", "PolicyErrorKind",
    "PolicyRequest", "PolicyTurn", "SamplingParams", "ScriptedPolicy", "gold_script", "serve",
]
