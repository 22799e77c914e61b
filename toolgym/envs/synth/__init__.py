"""Task synthesis (Kimi K2 style): from tool specs to agents and tasks with rubrics, and the data engine's early stages.

``FallbackSynthesizer`` needs no model and is deterministic from the seed; ``LLMSynthesizer``
asks a policy for JSON, validates it, retries, and falls back per item.

The data engine (``toolgym synth``, see docs/data_engine.md) builds on them: tool sources
(``openapi``, ``sources``), a domain ``taxonomy``, evolution ``operators`` and proposers
(``evolve``), the cached tools stage (``toolset``), agents and tasks at scale (``population``),
and the exported envs (``registered``). Its later stages live in ``toolgym.rubrics.synth``.
"""

from toolgym.envs.synth.fallback import FallbackSynthesizer
from toolgym.envs.synth.llm import LLMSynthesizer, asynthesize, synthesize
from toolgym.envs.synth.models import JUDGE, AgentSpec, SynthResult, rubric_items, rubric_of
from toolgym.envs.synth.openapi import OpenAPIError, import_openapi, load_openapi
from toolgym.envs.synth.records import ItemFailure, ToolRecord
from toolgym.envs.synth.taxonomy import Taxonomy, generated_taxonomy, load_taxonomy

__all__ = [
    "JUDGE", "AgentSpec", "FallbackSynthesizer", "ItemFailure", "LLMSynthesizer", "OpenAPIError", "SynthResult", "Taxonomy",
    "ToolRecord", "asynthesize", "generated_taxonomy", "import_openapi", "load_openapi", "load_taxonomy", "rubric_items",
    "rubric_of", "synthesize",
]
