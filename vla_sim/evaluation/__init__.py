"""Success-rate evaluation, rollout videos and reports.

    from vla_sim.evaluation import EvalConfig, PolicySpec, evaluate, write_report
    result = evaluate(PolicySpec("expert"), EvalConfig(env_ids=["vla_sim/Reach-v0"], episodes=20))
    write_report(result, "runs/eval")
"""

from vla_sim.evaluation.evaluator import (CellSummary, EpisodeRecord, EvalConfig, EvalResult,
                                          evaluate, first_frame_hash, randomization_hash)
from vla_sim.evaluation.policies import PolicySpec, RandomPolicy, check_policy_spaces, parse_policy
from vla_sim.evaluation.report import load_report, write_report
from vla_sim.evaluation.stats import intervals_overlap, wilson_interval

__all__ = [
    "CellSummary", "EpisodeRecord", "EvalConfig", "EvalResult", "evaluate", "first_frame_hash",
    "randomization_hash", "PolicySpec", "RandomPolicy", "check_policy_spaces", "parse_policy",
    "load_report", "write_report", "intervals_overlap", "wilson_interval",
]
