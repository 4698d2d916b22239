"""Each scripted expert solves seeded episodes of its task (Panda, randomization low)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import vla_sim  # noqa: F401
from vla_sim.agents.experts import MultiTaskExpert, make_expert
from vla_sim.utils.seeding import episode_seed


def solve(env_id: str, seeds, robot: str = "panda", level: str = "low") -> list[bool]:
    env = gym.make(env_id, robot=robot, randomization=level, image_size=16)
    expert = make_expert(env)
    results = []
    try:
        for seed in seeds:
            obs, info = env.reset(seed=seed)
            done = False
            while not done:
                action = expert.act(obs)
                assert action.shape == (4,) and action.dtype == np.float32
                assert np.all(np.abs(action) <= 1.0)
                obs, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
            results.append(bool(info["is_success"]))
    finally:
        env.close()
    return results


@pytest.mark.parametrize("task", ["Reach", "Push", "PickPlace", "Stack"])
def test_expert_solves_seeded_episodes(task):
    seeds = [episode_seed(0, i) for i in range(3)]
    assert all(solve(f"vla_sim/{task}-v0", seeds)), task


def test_multitask_expert_dispatches_per_episode():
    env = gym.make("vla_sim/MultiTask-v0", image_size=16, randomization="low")
    assert isinstance(make_expert(env), MultiTaskExpert)
    env.close()
    assert all(solve("vla_sim/MultiTask-v0", [episode_seed(0, i) for i in range(2)]))


def test_iiwa_expert_solves_pick_place():
    assert all(solve("vla_sim/PickPlace-v0", [episode_seed(0, 1)], robot="iiwa"))


def test_expert_noise_only_when_not_deterministic():
    env = gym.make("vla_sim/Reach-v0", image_size=16, randomization="none")
    obs, _ = env.reset(seed=0)
    expert = make_expert(env, noise_std=0.3, seed=1)
    a, b = expert.act(obs), expert.act(obs)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, expert.act(obs, deterministic=False))
    env.close()
