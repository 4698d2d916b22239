"""``vla-sim bench``: env steps/s next to a raw PyBullet loop doing the same work (a ratio)."""

from __future__ import annotations

import argparse

TASKS = ("reach", "push", "pick_place", "stack")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="env speed vs a raw PyBullet loop",
                              description=__doc__)
    p.add_argument("--tasks", nargs="+", default=["pick_place"], choices=TASKS)
    p.add_argument("--robots", nargs="+", default=["panda"], choices=["panda", "iiwa"])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=100, help="control steps per timed block")
    p.add_argument("--blocks", type=int, default=3, help="alternating blocks; the best counts")
    p.add_argument("--detailed", action="store_true",
                   help="also time the stock detailed Panda meshes (slow to render)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vla_sim.evaluation.throughput import compare

    if args.steps < 1 or args.blocks < 1:
        raise ValueError(f"--steps and --blocks must be >= 1, got {args.steps} and {args.blocks}")
    rows = [(t, r, False) for r in args.robots for t in args.tasks]
    if args.detailed:
        rows += [(t, "panda", True) for t in args.tasks]
    print(f"{'task':<11} {'robot':<6} {'meshes':<9} {'env st/s':>9} {'raw st/s':>9} {'ratio':>6}")
    for task, robot, detailed in rows:
        c = compare(task, robot, args.image_size, args.steps, args.blocks, detailed)
        print(f"{task:<11} {robot:<6} {'detailed' if detailed else 'low-poly':<9} "
              f"{c.env_steps_per_s:>9.0f} {c.raw_steps_per_s:>9.0f} {c.ratio:>6.2f}", flush=True)
    return 0
