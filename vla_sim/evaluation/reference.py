"""Compare an evaluation against an earlier report: same scenes? which versions changed? did
the success rate move by more than its uncertainty?"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from vla_sim.evaluation.policies import DEFAULT_EXPERT_FACTORY
from vla_sim.evaluation.evaluator import EvalConfig, EvalResult, first_frame_hash, make_eval_env
from vla_sim.evaluation.stats import intervals_overlap, wilson_interval
from vla_sim.utils.fingerprint import fingerprint, fingerprint_differences
from vla_sim.utils.seeding import episode_seed


def reference_config(report: dict[str, Any], **overrides: Any) -> EvalConfig:
    """The old report's EvalConfig, with the non-None ``overrides`` applied.

    A report is data, never code: an expert factory it names (``module:function``, which the
    evaluator would import and call) is used only when the caller passes the same one as an
    override; otherwise this refuses, naming it."""
    data = dict(report.get("config") or {})
    if not isinstance(report.get("config"), dict):
        raise ValueError("reference report has no 'config' object (not a vla-sim report.json?)")
    named = data.pop("expert_factory", DEFAULT_EXPERT_FACTORY)
    given = overrides.get("expert_factory")
    if named != DEFAULT_EXPERT_FACTORY and given != named:
        raise ValueError(f"the reference report names expert factory {named!r}, code it would "
                         f"import and run; pass --expert-factory {named} to trust it")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return EvalConfig.from_dict(data)
    except TypeError as exc:
        raise ValueError(f"reference report config is malformed: {exc}") from None


@dataclasses.dataclass
class SceneCheck:
    compared: int
    differing: list[dict[str, Any]]  # cell, index, old and new first-frame hash
    missing: int  # old episodes this evaluation does not run (other cells, higher index)

    @property
    def identical(self) -> bool:
        return self.compared > 0 and not self.differing

    def to_dict(self) -> dict[str, Any]:
        return {"compared": self.compared, "identical": self.identical,
                "differing": self.differing, "missing": self.missing}


def check_scenes(config: EvalConfig, report: dict[str, Any]) -> SceneCheck:
    """Reset the env of every old episode that ``config`` will run (no policy, no stepping) and
    compare first-frame hashes with the report's."""
    cells = set(config.cells())
    wanted: dict[tuple, list[dict[str, Any]]] = {}
    missing = 0
    for ep in report["episodes"]:
        cell = (ep["env_id"], ep["split"], ep["level"])
        if cell in cells and ep["index"] < config.episodes:
            wanted.setdefault(cell, []).append(ep)
        else:
            missing += 1
    differing, compared = [], 0
    for cell, eps in wanted.items():
        env = make_eval_env(config, *cell)
        try:
            for ep in eps:
                obs, _ = env.reset(seed=episode_seed(config.base_seed, ep["index"]))
                new = first_frame_hash(obs)
                compared += 1
                if new != ep["first_frame_hash"]:
                    differing.append({"cell": list(cell), "index": ep["index"],
                                      "old": ep["first_frame_hash"], "new": new})
        finally:
            env.close()
    return SceneCheck(compared, differing, missing)


def describe_scene_check(check: SceneCheck, report: dict[str, Any],
                         current_fingerprint: Optional[dict[str, Any]] = None) -> list[str]:
    """Human-readable lines: scenes identical or not, then every fingerprint field that differs."""
    lines = []
    if check.compared == 0:
        lines.append("scenes: nothing to compare (no episode of the reference is re-run)")
    elif check.identical:
        lines.append(f"scenes: IDENTICAL ({check.compared}/{check.compared} episodes have the "
                     "same first-frame hash)")
    else:
        first = check.differing[0]
        lines.append(f"scenes: DIFFERENT in {len(check.differing)}/{check.compared} episodes "
                     f"(first: {'/'.join(first['cell'])} episode {first['index']}: "
                     f"{first['old']} -> {first['new']}); success rates below compare "
                     "different episodes")
    if check.missing:
        lines.append(f"  ({check.missing} reference episodes are not re-run)")
    diffs = fingerprint_differences(report.get("fingerprint", {}),
                                    current_fingerprint or fingerprint())
    if diffs:
        lines.append("versions: " + "; ".join(f"{k}: {a} -> {b}" for k, a, b in diffs))
    else:
        lines.append("versions: same fingerprint")
    return lines


def compare_results(report: dict[str, Any], result: EvalResult,
                    scenes: Optional[SceneCheck] = None) -> dict[str, Any]:
    """Per-cell success-rate difference with both 95% Wilson intervals and their overlap."""
    old_cells = {(c["env_id"], c["split"], c["level"]): c for c in report["cells"]}
    cells = []
    for c in result.cells:
        old = old_cells.get((c.env_id, c.split, c.level))
        if old is None:
            continue
        old_ci = wilson_interval(old["successes"], old["episodes"])
        new_ci = (c.ci_low, c.ci_high)
        cells.append({"env_id": c.env_id, "split": c.split, "level": c.level,
                      "old_rate": old["success_rate"], "old_ci": list(old_ci),
                      "new_rate": c.success_rate, "new_ci": list(new_ci),
                      "difference": c.success_rate - old["success_rate"],
                      "overlap": intervals_overlap(old_ci, new_ci)})
    diffs = fingerprint_differences(report.get("fingerprint", {}), result.fingerprint)
    n_sep = sum(not d["overlap"] for d in cells)
    summary = (f"{len(cells)} cells compared; {n_sep} with non-overlapping 95% intervals"
               + ("" if scenes is None else
                  f"; scenes {'identical' if scenes.identical else 'DIFFERENT'}"))
    return {"policy": report.get("policy"), "cells": cells, "summary": summary,
            "scenes": scenes.to_dict() if scenes else None,
            "version_differences": [list(d) for d in diffs]}


def describe_comparison(comparison: dict[str, Any]) -> list[str]:
    lines = []
    for d in comparison["cells"]:
        lines.append(
            f"{d['env_id']} {d['split']} {d['level']}: {d['old_rate']:.1%} "
            f"[{d['old_ci'][0]:.1%}, {d['old_ci'][1]:.1%}] -> {d['new_rate']:.1%} "
            f"[{d['new_ci'][0]:.1%}, {d['new_ci'][1]:.1%}]  diff {d['difference']:+.1%}, "
            f"intervals {'overlap' if d['overlap'] else 'DO NOT overlap'}")
    lines.append(comparison["summary"])
    return lines
