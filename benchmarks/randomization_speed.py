"""What randomization costs: sampling, applying a sample at reset, and env steps/s per level.

Target: sampling + applying adds < 10 ms to reset() at level high.

    python benchmarks/randomization_speed.py
    python benchmarks/randomization_speed.py --env vla_sim/Stack-v0 --resets 100 --steps 200
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import vla_sim  # noqa: F401
from vla_sim.randomization import LEVELS, sample_randomization


def level_costs(env_id: str, level: str, resets: int, steps: int, robot: str = "panda",
                image_size: int = 64) -> dict:
    """Milliseconds per sample draw, per scene apply, per full reset; steps/s at this level."""
    env = gym.make(env_id, robot=robot, randomization=level, image_size=image_size)
    u = env.unwrapped
    env.reset(seed=0)
    t_sample = t_apply = t_reset = 0.0
    for i in range(resets):
        start = time.perf_counter()
        env.reset(seed=i)
        t_reset += time.perf_counter() - start
        items = u.instance.placements()
        start = time.perf_counter()
        sample = sample_randomization(u.randomization, items, np.random.default_rng(i))
        t_sample += time.perf_counter() - start
        start = time.perf_counter()
        u.scene.apply(sample)
        t_apply += time.perf_counter() - start
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 4)).astype(np.float32)
    elapsed, episode = 0.0, 0
    for a in actions:
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(a)
        elapsed += time.perf_counter() - start
        if terminated or truncated:
            episode += 1
            env.reset(seed=episode)
    env.close()
    return {"sample_ms": 1e3 * t_sample / resets, "apply_ms": 1e3 * t_apply / resets,
            "reset_ms": 1e3 * t_reset / resets, "steps_per_s": steps / elapsed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="vla_sim/PickPlace-v0")
    parser.add_argument("--robot", default="panda", choices=["panda", "iiwa"])
    parser.add_argument("--resets", type=int, default=50)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"{args.env} {args.robot} 64x64: {args.resets} resets, {args.steps} steps per level")
    print(f"{'level':<7} {'sample ms':>9} {'apply ms':>9} {'sum ms':>7} {'reset ms':>9} {'steps/s':>8}")
    for level in LEVELS:
        r = level_costs(args.env, level, args.resets, args.steps, args.robot)
        print(f"{level:<7} {r['sample_ms']:>9.2f} {r['apply_ms']:>9.2f} "
              f"{r['sample_ms'] + r['apply_ms']:>7.2f} {r['reset_ms']:>9.2f} "
              f"{r['steps_per_s']:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
