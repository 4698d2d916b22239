"""Env steps/s for each task at 64x64 RGB, next to a raw PyBullet loop doing the same work.

Both run in the same process, in alternating blocks (best block of each), so the ratio is the
env's overhead and not the load on a shared machine. Target: PickPlace Panda >= 0.85.

    python benchmarks/env_speed.py                 # all tasks, both robots + detailed meshes
    python benchmarks/env_speed.py --tasks pick_place --robots panda --steps 200
"""

from __future__ import annotations

import argparse

from vla_sim.evaluation.throughput import TASK_OBJECTS, compare


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASK_OBJECTS), choices=list(TASK_OBJECTS))
    parser.add_argument("--robots", nargs="+", default=["panda", "iiwa"], choices=["panda", "iiwa"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100, help="control steps per block")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--no-detailed", action="store_true",
                        help="skip the stock detailed-mesh Panda reference row")
    args = parser.parse_args(argv)
    rows = [(t, r, False) for r in args.robots for t in args.tasks]
    if not args.no_detailed and "panda" in args.robots:
        rows.append(("pick_place", "panda", True))
    print(f"env vs raw PyBullet, {args.image_size}x{args.image_size} RGB, randomization none, "
          f"{args.blocks} blocks x {args.steps} steps, best block")
    print(f"{'task':<11} {'robot':<6} {'meshes':<9} {'env st/s':>9} {'raw st/s':>9} {'ratio':>6}")
    for task, robot, detailed in rows:
        c = compare(task, robot, args.image_size, args.steps, args.blocks, detailed)
        print(f"{task:<11} {robot:<6} {'detailed' if detailed else 'low-poly':<9} "
              f"{c.env_steps_per_s:>9.0f} {c.raw_steps_per_s:>9.0f} {c.ratio:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
