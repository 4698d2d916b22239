"""Collection throughput (episodes/s) with 1 and 2 worker processes, and expert success.

    python benchmarks/collect_speed.py [--env Reach] [--episodes 20] [--image-size 64]

Each run collects into a fresh temporary dataset (encoding and writing included). Worker start-up
(spawn + env build) is included in the 2-worker figure, as a user would see it.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from vla_sim.data.collect import CollectConfig, collect


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Reach")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--randomization", default="low")
    p.add_argument("--workers", default="1,2")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vla_sim_collect_bench_"))
    try:
        print(f"env={args.env} episodes={args.episodes} image_size={args.image_size} "
              f"randomization={args.randomization}")
        for workers in (int(w) for w in args.workers.split(",")):
            cfg = CollectConfig(out=str(tmp / f"w{workers}"), env=args.env, episodes=args.episodes,
                                image_size=args.image_size, randomization=args.randomization,
                                workers=workers, progress=False)
            r = collect(cfg)
            print(f"workers={workers}: {r.attempts} attempts in {r.seconds:.2f} s = "
                  f"{r.attempts / r.seconds:.2f} episodes/s ({r.successes / r.seconds:.2f} kept/s), "
                  f"expert success {r.success_rate:.1%}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
