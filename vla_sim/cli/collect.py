"""``vla-sim collect``: record scripted-expert demonstrations into a LeRobot v3.0 dataset."""

from __future__ import annotations

import argparse

from vla_sim.utils.seeding import TRAIN_BASE_SEED


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "collect", help="collect expert demonstrations (LeRobotDataset v3.0), resumable",
        description="Roll out the scripted expert and keep successful episodes. Re-running the same "
                    "command resumes an interrupted collection; a larger --episodes extends it.")
    p.add_argument("--env", default="Reach", help="Reach, Push, PickPlace, Stack, MultiTask or a full env id")
    p.add_argument("--robot", default="panda", choices=["panda", "iiwa"])
    p.add_argument("--episodes", type=int, default=10, help="successful episodes to collect (default 10)")
    p.add_argument("--randomization", default="low", choices=["none", "low", "medium", "high"])
    p.add_argument("--instruction-split", default="train", choices=["train", "heldout"])
    p.add_argument("--seed", type=int, default=TRAIN_BASE_SEED, help="base seed; attempt i uses episode_seed(seed, i)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--out", required=True, help="dataset folder")
    p.add_argument("--keep-failures", action="store_true", help="also store failed attempts (success=false)")
    p.add_argument("--noise", type=float, default=0.0, help="std of Gaussian noise on expert actions")
    p.add_argument("--max-attempts", type=int, default=None,
                   help="cap on attempts in total (default 3 * episodes + 20)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--cameras", default="front", help="comma-separated: front or front,wrist")
    p.add_argument("--expert", default=None, help=argparse.SUPPRESS)  # "module:factory", for tests
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vla_sim.data.collect import DEFAULT_EXPERT, CollectConfig, collect

    cfg = CollectConfig(
        out=args.out, env=args.env, robot=args.robot, episodes=args.episodes,
        randomization=args.randomization, instruction_split=args.instruction_split, seed=args.seed,
        workers=args.workers, keep_failures=args.keep_failures, noise=args.noise,
        max_attempts=args.max_attempts, image_size=args.image_size,
        cameras=tuple(c.strip() for c in args.cameras.split(",") if c.strip()),
        expert=args.expert or DEFAULT_EXPERT, progress=not args.no_progress)
    r = collect(cfg)
    rate = r.attempts_this_run / r.seconds if r.seconds > 0 else 0.0
    print(f"{r.out}: {r.episodes} episodes ({r.successes} successful) after {r.attempts} attempts; "
          f"expert success {r.success_rate:.1%}; this run {r.attempts_this_run} attempts in "
          f"{r.seconds:.1f} s ({rate:.2f} attempts/s)")
    if not r.reached_target:
        print(f"warning: stopped at the attempt cap ({cfg.attempt_cap}) with {r.successes} of "
              f"{cfg.episodes} successes; raise --max-attempts to continue")
        return 1
    return 0
