"""How an episode is judged: verifiable checks, rubrics, critics, typed failures, calibration.

>>> import toolgym
>>> from toolgym.rollouts import ScriptedPolicy, run_episodes, sample_tasks
>>> from toolgym.rubrics import rubric_for, score_episodes_sync
>>> tasks = sample_tasks("toolgym/unitconv-v0", n=2, seed=0)
>>> episodes = run_episodes("toolgym/unitconv-v0", ScriptedPolicy.gold(tasks), tasks=tasks)
>>> scores = score_episodes_sync(episodes, rubric_for("toolgym/unitconv-v0").verifiable())
>>> [s.total for s in scores]
[1.0, 1.0]
"""

from toolgym.rubrics.catalog import catalog_rubrics, rubric_for
from toolgym.rubrics.checks import CHECKS, CheckUnscorable, register_check
from toolgym.rubrics.compose import compose
from toolgym.rubrics.critics import FunctionCritic, JudgeBudget, JudgementCache, LLMJudge, PairwiseCritic
from toolgym.rubrics.loading import RubricError, load_rubric, rubric_from_dict
from toolgym.rubrics.metrics import score_metrics
from toolgym.rubrics.rubric import CheckSource, Criterion, CriticSource, Penalty, Rubric, Scale
from toolgym.rubrics.score import ComponentCost, CriterionScore, PenaltyScore, Score, Unscorable
from toolgym.rubrics.scoring import score_episodes, score_episodes_sync

__all__ = [
    "CHECKS", "CheckSource", "CheckUnscorable", "ComponentCost", "Criterion", "CriterionScore", "CriticSource",
    "FunctionCritic", "JudgeBudget", "JudgementCache", "LLMJudge", "PairwiseCritic", "Penalty", "PenaltyScore",
    "Rubric", "RubricError", "Scale", "Score", "Unscorable", "catalog_rubrics", "compose", "load_rubric",
    "register_check", "rubric_for", "rubric_from_dict", "score_episodes", "score_episodes_sync", "score_metrics",
]
