"""Shared fixtures for the dataset tests: synthetic episodes and a fake env on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # `vla_fake_env` must import here and in spawned workers


def smooth_frames(rng: np.random.Generator, t: int, size: int) -> np.ndarray:
    """Frames like low-resolution renders: flat colours with a moving soft blob."""
    yy, xx = np.mgrid[:size, :size]
    base = rng.integers(30, 220, 3)
    frames = np.empty((t, size, size, 3), np.uint8)
    for i in range(t):
        cx, cy = size * (0.2 + 0.6 * i / max(t - 1, 1)), size * 0.5
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (size / 8) ** 2))[..., None]
        frames[i] = np.clip(base * (1 - blob) + np.array([250, 240, 40]) * blob, 0, 255)
    return frames


def make_episode(rng: np.random.Generator, t: int, size: int = 32, cameras=("front",),
                 instruction: str = "reach the red target", seed: int = 0):
    from vla_sim.data.writer import Episode

    return Episode(
        images={c: smooth_frames(rng, t, size) for c in cameras},
        states=rng.normal(size=(t, 22)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(t, 4)).astype(np.float32),
        rewards=rng.normal(size=t).astype(np.float32),
        dones=np.arange(t) == t - 1, instruction=instruction,
        metadata={"seed": seed, "randomization": {"goal": [0.1, 0.2, 0.3]}, "task": "reach",
                  "success": True, "attempt_index": seed})


@pytest.fixture
def episode_factory():
    return make_episode
