"""Scripted-expert success rates: 100 seeded episodes per task and robot at a randomization level.

Seeds are ``episode_seed(0, i)`` (the training base seed), so the numbers describe the episodes
demonstrations are collected from. Prints a table; no asserts (target >= 95% per row).

    python benchmarks/expert_success.py --episodes 100 --level medium
    python benchmarks/expert_success.py --episodes 20 --tasks PickPlace --robots iiwa
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import vla_sim  # noqa: F401  (registers the ids)
from vla_sim.agents.experts import make_expert
from vla_sim.utils.seeding import episode_seed

TASKS = ("Reach", "Push", "PickPlace", "Stack", "MultiTask")
ROBOTS = ("panda", "iiwa")


def expert_success(task: str, robot: str, episodes: int, level: str, base_seed: int = 0,
                   image_size: int = 32) -> dict:
    """Roll the scripted expert for ``episodes`` seeded episodes; success rate and failed seeds."""
    env = gym.make(f"vla_sim/{task}-v0", robot=robot, randomization=level, image_size=image_size)
    expert = make_expert(env)
    failed, lengths, start = [], [], time.perf_counter()
    try:
        for i in range(episodes):
            seed = episode_seed(base_seed, i)
            obs, info = env.reset(seed=seed)
            done, steps = False, 0
            while not done:
                obs, _, terminated, truncated, info = env.step(expert.act(obs))
                done, steps = terminated or truncated, steps + 1
            lengths.append(steps)
            if not info["is_success"]:
                failed.append((i, seed, info["task"]))
    finally:
        env.close()
    return {"task": task, "robot": robot, "episodes": episodes,
            "success": 1.0 - len(failed) / episodes, "mean_length": float(np.mean(lengths)),
            "failed": failed, "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--level", default="medium")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--robots", nargs="+", default=list(ROBOTS), choices=ROBOTS)
    parser.add_argument("--base-seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"expert success, {args.episodes} episodes, randomization={args.level}, "
          f"seeds episode_seed({args.base_seed}, i)")
    print(f"{'task':<10} {'robot':<6} {'success':>8} {'len':>6} {'time s':>7}  failed (index, seed, task)")
    for robot in args.robots:
        for task in args.tasks:
            r = expert_success(task, robot, args.episodes, args.level, args.base_seed)
            print(f"{task:<10} {robot:<6} {r['success']:>8.1%} {r['mean_length']:>6.1f} "
                  f"{r['seconds']:>7.1f}  {r['failed'][:10]}", flush=True)


if __name__ == "__main__":
    main()
