"""``vla-sim randomize``: a grid of first frames under a randomization level, labelled by seed."""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "randomize", help="write a gallery of randomized first frames (PNG grid)",
        description="Reset an env with seeds 0..n-1 and tile the first render_size frames into "
                    "one PNG, each labelled with its seed, so a level can be judged by eye.")
    p.add_argument("--env", default="PickPlace",
                   help="Reach, Push, PickPlace, Stack, MultiTask or a full env id")
    p.add_argument("--robot", default="panda", choices=["panda", "iiwa"])
    p.add_argument("--level", default="high",
                   help="none, low, medium, high or a YAML file of RandomizationConfig fields")
    p.add_argument("--n", type=int, default=16, help="number of seeds / tiles (default 16)")
    p.add_argument("--seed", type=int, default=0, help="first seed (tiles use seed..seed+n-1)")
    p.add_argument("--size", type=int, default=256, help="tile size in pixels (render_size)")
    p.add_argument("--out", default="gallery.png", help="PNG path (written atomically)")
    p.set_defaults(func=run)


def env_id(name: str) -> str:
    """``PickPlace`` -> ``vla_sim/PickPlace-v0``; full ids pass through (validated by gymnasium)."""
    from vla_sim.envs.registration import ENV_IDS

    if "/" in name:
        full = name.split(":", 1)[-1]
    else:
        full = f"vla_sim/{name}-v0"
    if full not in ENV_IDS:
        short = [i.split("/")[1].removesuffix("-v0") for i in ENV_IDS]
        raise ValueError(f"unknown env {name!r}; valid: {short} or {sorted(ENV_IDS)}")
    return full


def gallery(env_name: str, robot: str, level: str, n: int, first_seed: int, size: int):
    """A PIL image: ceil(sqrt(n)) columns of first frames, each with 'seed N' in a corner."""
    import gymnasium as gym
    from PIL import Image, ImageDraw

    import vla_sim  # noqa: F401

    env = gym.make(env_id(env_name), robot=robot, randomization=level, image_size=16,
                   render_mode="rgb_array", render_size=size)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = Image.new("RGB", (cols * size, rows * size), (0, 0, 0))
    draw = ImageDraw.Draw(grid)
    try:
        for k in range(n):
            seed = first_seed + k
            _, info = env.reset(seed=seed)
            x, y = (k % cols) * size, (k // cols) * size
            grid.paste(Image.fromarray(env.render()), (x, y))
            label = f"seed {seed} {info['task']}"
            draw.rectangle((x, y, x + 7 * len(label) + 4, y + 13), fill=(0, 0, 0))
            draw.text((x + 2, y + 1), label, fill=(255, 255, 255))
    finally:
        env.close()
    return grid


def run(args: argparse.Namespace) -> int:
    from vla_sim.utils.io import atomic_write_bytes

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if not 16 <= args.size <= 1024:
        raise ValueError(f"--size must be in [16, 1024], got {args.size}")
    image = gallery(args.env, args.robot, args.level, args.n, args.seed, args.size)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {out} ({args.n} first frames, {args.env}, level {args.level}, "
          f"seeds {args.seed}..{args.seed + args.n - 1})")
    return 0
