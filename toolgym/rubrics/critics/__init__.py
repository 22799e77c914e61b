"""Critics: judges that score episodes where no check can (LLM, pairwise, programmatic)."""

from toolgym.rubrics.critics.base import Critic, CriticResult, FunctionCritic, Judgement
from toolgym.rubrics.critics.budget import JudgeBudget, JudgementCache, cache_key
from toolgym.rubrics.critics.judge import LLMJudge, judge_prompt
from toolgym.rubrics.critics.label_critic import LabelPairwiseCritic, LabelQuestion
from toolgym.rubrics.critics.pairwise import PairwiseCritic, pairwise_prompt
from toolgym.rubrics.critics.parse import JudgementParseError, extract_json, parse_pairwise, parse_pointwise
from toolgym.rubrics.critics.ranking import bradley_terry, win_matrix, win_rate
from toolgym.rubrics.critics.transcript import render_transcript

__all__ = [
    "Critic",
    "CriticResult",
    "FunctionCritic",
    "JudgeBudget",
    "Judgement",
    "JudgementCache",
    "JudgementParseError",
    "LabelPairwiseCritic",
    "LabelQuestion",
    "LLMJudge",
    "PairwiseCritic",
    "bradley_terry",
    "cache_key",
    "extract_json",
    "judge_prompt",
    "pairwise_prompt",
    "parse_pairwise",
    "parse_pointwise",
    "render_transcript",
    "win_matrix",
    "win_rate",
]
