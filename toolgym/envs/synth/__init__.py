"""Task synthesis (Kimi K2 style): from tool specs to agents and tasks with rubrics.

``FallbackSynthesizer`` needs no model and is deterministic from the seed; ``LLMSynthesizer``
asks a policy for JSON, validates it, retries, and falls back per item.
"""

from toolgym.envs.synth.fallback import FallbackSynthesizer
from toolgym.envs.synth.llm import LLMSynthesizer, asynthesize, synthesize
from toolgym.envs.synth.models import JUDGE, AgentSpec, SynthResult, rubric_items, rubric_of

__all__ = ["JUDGE", "AgentSpec", "FallbackSynthesizer", "LLMSynthesizer", "SynthResult", "asynthesize", "rubric_items", "rubric_of", "synthesize"]
