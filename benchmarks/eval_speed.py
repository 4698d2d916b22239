"""Evaluation throughput (episodes/s): scripted expert on a task, with and without videos, at 1
and 2 workers. Prints one line per setting; numbers depend on the machine and its load.

    python benchmarks/eval_speed.py [--env vla_sim/Reach-v0] [--episodes 8] [--image-size 64]
"""

from __future__ import annotations

import argparse
import tempfile

from vla_sim.evaluation.evaluator import EvalConfig, evaluate
from vla_sim.evaluation.policies import PolicySpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="vla_sim/Reach-v0")
    parser.add_argument("--policy", default="expert", choices=["expert", "random"])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--render-size", type=int, default=256)
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args()
    print(f"{args.policy} on {args.env}: {args.episodes} episodes, image {args.image_size} px, "
          f"video frames {args.render_size} px")
    steps_note = None
    for workers in (1, 2):
        for video in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = EvalConfig(env_ids=[args.env], episodes=args.episodes, splits=["train"],
                                 randomization=["low"], image_size=args.image_size,
                                 render_size=args.render_size, workers=workers,
                                 max_episode_steps=args.max_steps,
                                 video_dir=tmp if video else None,
                                 record="all" if video else "none", videos=None)
                result = evaluate(PolicySpec(args.policy), cfg)
            steps = sum(e.length for e in result.episodes)
            wall = result.timing["wall_s"]
            steps_note = steps
            print(f"workers={workers} video={'all' if video else 'none':4s}: "
                  f"{len(result.episodes) / wall:6.2f} episodes/s, {steps / wall:7.1f} env steps/s "
                  f"({wall:.2f} s wall incl. process and env start-up)")
    print(f"({steps_note} env steps per run)")


if __name__ == "__main__":
    main()
