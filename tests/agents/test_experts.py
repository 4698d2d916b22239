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


def _push_state(ee_xy, ee_z: float = 0.018) -> dict:
    """Object at the origin, zone 20 cm along +x: "behind the object" is -x."""
    return {"ee_position": np.array([*ee_xy, ee_z]),
            "roles": {"object": "cube", "destination": "zone"},
            "objects": {"cube": {"position": np.array([0.0, 0.0, 0.02])},
                        "zone": {"position": np.array([0.2, 0.0, 0.0])}}}


@pytest.mark.parametrize("along", [-0.05, -0.035, -0.025])
def test_push_labels_change_smoothly_as_the_arm_drifts_sideways(along):
    """A learner a few millimetres off the expert's path gets nearly the expert's label: no
    switch between "push" and "go back behind the object" on a lateral threshold."""
    from types import SimpleNamespace

    from vla_sim.agents.experts.scripted import PushExpert

    env = SimpleNamespace(unwrapped=SimpleNamespace(robot=SimpleNamespace(max_ee_step=0.025)))
    expert = PushExpert(env)
    labels = [expert.plan(_push_state((along, lateral)))
              for lateral in np.arange(-0.06, 0.0605, 0.001)]
    steps = np.abs(np.diff(np.stack(labels)[:, :3], axis=0)).max(axis=1)
    # 1 mm moves a proportional controller with gain 1/0.025 m by 0.04; allow blending slopes
    assert steps.max() < 0.2, f"label jumps by {steps.max():.2f} for a 1 mm sideways step"
    if along <= -0.035:  # on the line, well behind the object: it pushes toward the zone
        assert expert.plan(_push_state((along, 0.0)))[0] > 0.2
