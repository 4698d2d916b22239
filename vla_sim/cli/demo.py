"""``vla-sim demo``: roll out the scripted expert (or a random policy) and write an MP4."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="roll out the scripted expert and write a short MP4",
        description="Run a few episodes with the scripted expert (or random actions) and write "
                    "the render_size frames as one H.264 MP4.")
    p.add_argument("--env", default="PickPlace",
                   help="Reach, Push, PickPlace, Stack, MultiTask or a full env id")
    p.add_argument("--robot", default="panda", choices=["panda", "iiwa"])
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--randomization", default="low",
                   help="none, low, medium, high or a YAML file of RandomizationConfig fields")
    p.add_argument("--policy", default="expert", choices=["expert", "random"])
    p.add_argument("--seed", type=int, default=0, help="base seed (episode_seed(seed, i))")
    p.add_argument("--size", type=int, default=256, help="video frame size (render_size)")
    p.add_argument("--detailed", action="store_true", help="stock detailed robot meshes (slower)")
    p.add_argument("--out", default="demo.mp4", help="MP4 path (written atomically)")
    p.set_defaults(func=run)


def rollout_frames(env, policy: str, episodes: int, base_seed: int):
    """Frames of ``episodes`` episodes and their outcomes [(seed, task, success, steps)]."""
    import numpy as np

    from vla_sim.agents.experts import make_expert
    from vla_sim.utils.seeding import episode_seed

    expert = make_expert(env) if policy == "expert" else None
    rng = np.random.default_rng(base_seed)
    frames, outcomes = [], []
    for i in range(episodes):
        seed = episode_seed(base_seed, i)
        obs, info = env.reset(seed=seed)
        frames.append(env.render())
        done, steps = False, 0
        while not done:
            action = expert.act(obs) if expert else rng.uniform(-1, 1, 4).astype(np.float32)
            obs, _, terminated, truncated, info = env.step(action)
            frames.append(env.render())
            done, steps = terminated or truncated, steps + 1
        frames.extend([frames[-1]] * 10)  # hold the last frame for half a second
        outcomes.append((seed, info["task"], bool(info["is_success"]), steps, info["instruction"]))
    return np.stack(frames), outcomes


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import vla_sim  # noqa: F401
    from vla_sim.cli.randomize import env_id
    from vla_sim.utils.io import atomic_write_bytes
    from vla_sim.utils.video import encode_video_bytes

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if args.size % 2 or not 16 <= args.size <= 1024:
        raise ValueError(f"--size must be even and in [16, 1024], got {args.size}")
    env = gym.make(env_id(args.env), robot=args.robot, randomization=args.randomization,
                   image_size=64, render_mode="rgb_array", render_size=args.size,
                   detailed_meshes=args.detailed)
    try:
        frames, outcomes = rollout_frames(env, args.policy, args.episodes, args.seed)
        fps = env.unwrapped.metadata["render_fps"]
    finally:
        env.close()
    for seed, task, success, steps, text in outcomes:
        print(f"seed {seed} {task}: {'success' if success else 'failure'} in {steps} steps - {text!r}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, encode_video_bytes(frames, fps))
    print(f"wrote {out} ({len(frames)} frames, {fps} fps, {args.policy} policy)")
    return 0
