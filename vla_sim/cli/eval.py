"""``vla-sim eval``: success rates of a policy with videos and a report (wiring only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vla_sim.config import add_config_arguments, flag_values


def add_parser(subparsers: Any) -> None:
    from vla_sim.evaluation.evaluator import EvalConfig

    p = subparsers.add_parser(
        "eval", help="evaluate a policy: success rates, videos, report",
        description="Evaluate a policy on tasks x instruction splits x randomization levels. "
                    "Flags left out take EvalConfig defaults, or the reference report's values "
                    "with --reference.")
    p.add_argument("--policy", help="checkpoint directory, 'expert', 'random' or "
                                    "'import:package.module:function' (default with --reference: "
                                    "the reference's policy)")
    p.add_argument("--out", default="runs/eval", help="report directory (default: runs/eval)")
    p.add_argument("--reference", help="an earlier report.json: re-run its episodes and compare")
    # short names kept from earlier releases; lists are comma-separated and repeatable
    p.add_argument("--env", dest="cfg__env_ids", action="extend", type=_names,
                   help="alias of --env-ids (Reach, Push, PickPlace, Stack, MultiTask or ids)")
    p.add_argument("--split", dest="cfg__splits", action="extend", type=_names,
                   help="alias of --splits (train, heldout)")
    p.add_argument("--seed", dest="cfg__base_seed", type=int, help="alias of --base-seed")
    p.add_argument("--max-steps", dest="cfg__max_episode_steps", type=int,
                   help="alias of --max-episode-steps")
    add_config_arguments(p, EvalConfig, skip=("env_ids", "splits"), files=False)
    p.set_defaults(func=run)


SAFE_KINDS = ("checkpoint", "expert", "random")  # policy kinds a reference may name


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vla_sim.envs.registration import resolve_env_id
    from vla_sim.evaluation.evaluator import EvalConfig, evaluate
    from vla_sim.evaluation.policies import POLICY_KINDS, PolicySpec, parse_policy
    from vla_sim.evaluation.reference import (
        check_scenes,
        compare_results,
        describe_comparison,
        describe_scene_check,
        reference_config,
    )
    from vla_sim.evaluation.report import (
        PROBE_NOTE,
        cell_headers,
        cell_rows,
        has_probe,
        load_report,
        md_table,
        write_report,
    )

    out = Path(args.out)
    overrides = flag_values(args)  # only what was given on the command line
    if "env_ids" in overrides:
        overrides["env_ids"] = [resolve_env_id(e) for e in overrides["env_ids"]]
    reference = load_report(Path(args.reference)) if args.reference else None
    if reference is not None:
        # The reference's own video dir belongs to the old run; never write into it.
        config = reference_config(reference, **{**overrides, "video_dir": overrides.get("video_dir") or
                                                str(out / "videos")})
    else:
        config = EvalConfig(**overrides)
        if config.video_dir is None:
            config.video_dir = str(out / "videos")

    if args.policy:
        spec = parse_policy(args.policy)
    elif reference is not None and (reference.get("policy") or {}).get("kind") in SAFE_KINDS:
        # never "import": a report must not choose code to run
        ref_policy = reference["policy"]
        spec = PolicySpec(ref_policy["kind"], ref_policy.get("target"))
    elif reference is not None and (reference.get("policy") or {}).get("kind") in POLICY_KINDS:
        raise ValueError(f"the reference report's policy is {reference['policy']!r}, code it "
                         "would import and run; pass --policy to choose the policy yourself")
    else:
        raise ValueError("--policy is required (a checkpoint directory, 'expert' or 'random')")
    if spec.kind == "checkpoint" and reference is None:
        # The env must render what the checkpoint reads: its cameras and image size.
        from vla_sim.evaluation.policies import checkpoint_observation_settings

        size, cams = checkpoint_observation_settings(spec.target)
        if "image_size" not in overrides and size is not None:
            config.image_size = size
        if "cameras" not in overrides and cams:
            config.cameras = cams

    scenes = None
    if reference is not None:
        # Before any policy result: are these the same scenes, and what changed in the software?
        scenes = check_scenes(config, reference)
        for line in describe_scene_check(scenes, reference):
            print(line, flush=True)

    total = len(config.cells()) * config.episodes
    bar = tqdm(total=total, desc=f"eval {spec.describe()}", unit="ep", file=sys.stderr,
               disable=None)
    done = {"k": 0, "n": 0}

    def progress(record: Any) -> None:
        done["k"] += int(record.success)
        done["n"] += 1
        bar.set_postfix_str(f"success {done['k']}/{done['n']} = {done['k'] / done['n']:.0%}")
        bar.update(1)

    try:
        result = evaluate(spec, config, progress=progress)
    except KeyboardInterrupt:
        print(f"interrupted after {done['n']} of {total} episodes: evaluation keeps nothing "
              f"partial, no report was written to {out}", file=sys.stderr)
        raise
    finally:
        bar.close()

    comparison = compare_results(reference, result, scenes) if reference is not None else None
    paths = write_report(result, out, reference=comparison)
    cells = [c.to_dict() for c in result.cells]
    print(md_table(cell_headers(cells), cell_rows(cells)))
    if has_probe(cells):
        print("\n" + PROBE_NOTE)
    if comparison is not None:
        print("\nagainst the reference:")
        for line in describe_comparison(comparison):
            print("  " + line)
    wall = result.timing["wall_s"]
    probed = f" (each also run under the {config.probe} probe)" if config.probe else ""
    print(f"\n{len(result.episodes)} episodes{probed} in {wall:.1f} s "
          f"({len(result.episodes) / wall:.2f} episodes/s, {config.workers} worker(s))")
    print(f"report: {paths['json']}  {paths['html']}  {paths['md']}")
    return 0
