"""``vla-sim eval``: success rates of a policy with videos and a report (wiring only)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional


def _split_list(values: Optional[list[str]]) -> Optional[list[str]]:
    """Repeatable and comma-separated flags -> one list (None when the flag was not given)."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a policy: success rates, videos, report",
        description="Evaluate a policy on tasks x instruction splits x randomization levels. "
                    "Flags left out take EvalConfig defaults, or the reference report's values "
                    "with --reference.")
    p.add_argument("--policy", help="checkpoint directory, 'expert', 'random' or "
                                    "'import:package.module:function' (default with --reference: "
                                    "the reference's policy)")
    p.add_argument("--env", action="append", help="env id(s), repeatable or comma separated "
                                                  "(Reach, Push, PickPlace, Stack, MultiTask)")
    p.add_argument("--robot", help="panda or iiwa")
    p.add_argument("--episodes", type=int, help="episodes per (task, split, level) cell")
    p.add_argument("--split", action="append", help="train, heldout (repeatable or comma list)")
    p.add_argument("--randomization", action="append", help="none, low, medium, high")
    p.add_argument("--seed", type=int, help="base seed (default: the evaluation base seed)")
    p.add_argument("--workers", type=int, help="worker processes")
    p.add_argument("--image-size", type=int,
                   help="policy image size in pixels (default: the checkpoint's)")
    p.add_argument("--cameras", help="comma-separated env cameras, e.g. front,wrist "
                                     "(default: the checkpoint's)")
    p.add_argument("--max-steps", type=int, help="override the task's episode step limit")
    p.add_argument("--video-dir", help="where videos go (default: OUT/videos)")
    p.add_argument("--videos", type=int, help="videos per cell (0: none)")
    p.add_argument("--record", choices=["first", "failures", "all", "none"],
                   help="which episodes get a video")
    p.add_argument("--render-size", type=int, help="video frame size in pixels")
    p.add_argument("--no-alignment", action="store_true",
                   help="skip comparing actions with the scripted expert")
    p.add_argument("--expert-factory", help="'module:function' building the expert for an env")
    p.add_argument("--probe", choices=["swap"],
                   help="language probe: 'swap' re-runs every episode from the same scene with "
                        "the instruction naming another object of the scene; the report shows "
                        "the obeyed rate and the original-task rate beside the success rate")
    p.add_argument("--out", default="runs/eval", help="report directory (default: runs/eval)")
    p.add_argument("--reference", help="an earlier report.json: re-run its episodes and compare")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vla_sim.envs.registration import resolve_env_id
    from vla_sim.evaluation.evaluator import EvalConfig, evaluate
    from vla_sim.evaluation.policies import POLICY_KINDS, PolicySpec, parse_policy
    from vla_sim.evaluation.reference import (check_scenes, compare_results,
                                              describe_comparison, describe_scene_check,
                                              reference_config)
    from vla_sim.evaluation.report import (PROBE_NOTE, cell_headers, cell_rows, has_probe,
                                           load_report, md_table, write_report)

    out = Path(args.out)
    envs = _split_list(args.env)
    overrides = dict(
        env_ids=[resolve_env_id(e) for e in envs] if envs else None,
        robot=args.robot, episodes=args.episodes, splits=_split_list(args.split),
        randomization=_split_list(args.randomization), base_seed=args.seed,
        workers=args.workers, image_size=args.image_size, max_episode_steps=args.max_steps,
        video_dir=args.video_dir, videos=args.videos, record=args.record,
        render_size=args.render_size, alignment=False if args.no_alignment else None,
        expert_factory=args.expert_factory, probe=args.probe)
    reference = load_report(Path(args.reference)) if args.reference else None
    if reference is not None:
        # The reference's own video dir belongs to the old run; never write into it.
        config = reference_config(reference, **{**overrides, "video_dir": args.video_dir or
                                                str(out / "videos")})
    else:
        config = EvalConfig(**{k: v for k, v in overrides.items() if v is not None})
        if config.video_dir is None:
            config.video_dir = str(out / "videos")

    if args.policy:
        spec = parse_policy(args.policy)
    elif reference is not None and reference["policy"].get("kind") in POLICY_KINDS:
        spec = PolicySpec(**reference["policy"])
    else:
        raise ValueError("--policy is required (a checkpoint directory, 'expert' or 'random')")
    if args.cameras:
        config.cameras = _split_list(args.cameras)
    if spec.kind == "checkpoint" and reference is None:
        # The env must render what the checkpoint reads: its cameras and image size.
        from vla_sim.evaluation.policies import checkpoint_observation_settings

        size, cams = checkpoint_observation_settings(spec.target)
        if args.image_size is None and size is not None:
            config.image_size = size
        if not args.cameras and cams:
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
