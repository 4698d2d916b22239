"""Resident memory over many resets: RSS every ``--every`` resets and the growth slope.

Long RL runs reset hundreds of thousands of times, so a per-reset leak of a kilobyte is a
gigabyte per run. Target: the steady slope (second half of the samples) stays below ~0.1 MB per
1,000 resets. It was ~2.9 MB per 1,000 Reach resets at ``low`` and ~9 MB per 1,000 PickPlace
resets at ``high`` while every reset created and removed its object bodies (PyBullet never frees
~0.9 KB of a removed multibody, ~3 KB of a tray); the sim now parks and reuses them
(vla_sim/sim/client.py). The first ~2,000 resets still add <1 MB: the body pool and the
allocator's arenas reaching their working size.

    python benchmarks/reset_memory.py
    python benchmarks/reset_memory.py --env PickPlace --randomization high --resets 4000

RSS comes from ``/proc/self/statm`` (Linux); elsewhere the peak RSS of ``resource`` stands in.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np

import vla_sim  # noqa: F401  (registers the env ids)
from vla_sim.envs.registration import resolve_env_id


def rss_mb() -> float:
    """Resident set size of this process (MB)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: peak RSS (KB on Linux/BSD, bytes on macOS) is the best we have
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def slope_mb_per_1000(resets: list[int], rss: list[float]) -> float:
    """Least-squares slope of RSS against resets, in MB per 1,000 resets."""
    if len(resets) < 2:
        return 0.0
    return float(np.polyfit(np.asarray(resets, float), np.asarray(rss, float), 1)[0] * 1000)


def measure(env: str = "Reach", randomization: str = "low", resets: int = 4000, every: int = 1000,
            warmup: int = 200, image_size: int = 32, verbose: bool = True) -> dict:
    """Reset ``env`` ``warmup`` times, then ``resets`` times (seeds continue), sampling RSS at
    0 and every ``every`` resets. Returns the samples, the slope and the PyBullet body count."""
    e = gym.make(resolve_env_id(env), randomization=randomization, image_size=image_size)
    try:
        for seed in range(warmup):
            e.reset(seed=seed)
        client = e.unwrapped.sim.client
        bodies = [client.getNumBodies()]
        xs, ys = [0], [rss_mb()]
        start = time.perf_counter()
        if verbose:
            print(f"{resolve_env_id(env)} randomization={randomization} warm-up={warmup}")
            print(f"{'resets':>8} {'RSS MB':>8} {'+MB':>7} {'bodies':>7} {'ms/reset':>9}")
            print(f"{0:>8} {ys[0]:>8.1f} {0.0:>7.1f} {bodies[0]:>7} {'':>9}")
        t_last = start
        for i in range(1, resets + 1):
            e.reset(seed=warmup + i)
            if i % every == 0 or i == resets:
                xs.append(i)
                ys.append(rss_mb())
                bodies.append(client.getNumBodies())
                now = time.perf_counter()
                if verbose:
                    ms = (now - t_last) / (i - xs[-2]) * 1000
                    print(f"{i:>8} {ys[-1]:>8.1f} {ys[-1] - ys[0]:>7.1f} {bodies[-1]:>7} "
                          f"{ms:>9.2f}", flush=True)
                t_last = now
    finally:
        e.close()
    slope = slope_mb_per_1000(xs, ys)
    half = len(xs) // 2
    steady = slope_mb_per_1000(xs[half:], ys[half:])
    if verbose:
        print(f"slope: {slope:.3f} MB per 1,000 resets; steady (resets {xs[half]}-{xs[-1]}): "
              f"{steady:.3f} MB per 1,000 (max bodies {max(bodies)})")
    return {"resets": xs, "rss_mb": ys, "bodies": bodies, "slope_mb_per_1000": slope,
            "steady_slope_mb_per_1000": steady}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="Reach", help="Reach, Push, PickPlace, Stack, MultiTask")
    ap.add_argument("--randomization", default="low", help="none, low, medium, high")
    ap.add_argument("--resets", type=int, default=4000)
    ap.add_argument("--every", type=int, default=1000, help="print RSS every N resets")
    ap.add_argument("--warmup", type=int, default=200, help="resets before the first sample")
    ap.add_argument("--image-size", type=int, default=32)
    a = ap.parse_args()
    measure(a.env, a.randomization, a.resets, a.every, a.warmup, a.image_size)


if __name__ == "__main__":
    main()
