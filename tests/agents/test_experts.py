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


def _reach_state(dx: float, ee_z: float) -> dict:
    """Target at the origin (hover point 5 cm above its centre); the arm ``dx`` m off in x."""
    return {"ee_position": np.array([dx, 0.0, ee_z]), "roles": {"object": "cube"},
            "objects": {"cube": {"position": np.array([0.0, 0.0, 0.02])}}}


def _fake_env():
    from types import SimpleNamespace

    return SimpleNamespace(unwrapped=SimpleNamespace(robot=SimpleNamespace(max_ee_step=0.025)))


def test_reach_height_label_changes_smoothly_with_horizontal_distance():
    """At travel height the expert's descent grows as the arm closes in (a cone) instead of
    jumping from hold to full descent at one distance, where a cloned policy stalled."""
    from vla_sim.agents.experts.scripted import GatedReachExpert, ReachExpert

    travel = 0.02 + 0.05 + ReachExpert.TRAVEL_CLEARANCE
    offsets = np.arange(0.0, 0.06, 0.001)
    for cls, smooth in ((ReachExpert, True), (GatedReachExpert, False)):
        dz = np.array([cls(_fake_env()).plan(_reach_state(dx, travel))[2] for dx in offsets])
        assert dz[0] == -1.0 and dz[-1] == 0.0  # aligned: descend; far: hold the travel height
        assert (np.abs(np.diff(dz)).max() < 0.1) == smooth
        assert np.all(np.diff(dz) >= 0)  # the further out, the less descent


def test_reach_cone_holds_full_clearance_far_out_and_none_when_aligned():
    from vla_sim.agents.experts.scripted import ReachExpert

    expert = ReachExpert(_fake_env())
    near, far = ReachExpert.CONE
    hover = 0.02 + 0.05
    # at the hover height but far out: climb back to the travel height
    assert expert.plan(_reach_state(far + 0.01, hover))[2] == 1.0
    # at the hover height within the inner radius: no height change, only the horizontal move
    action = expert.plan(_reach_state(near / 2, hover))
    assert action[2] == 0.0 and action[0] < 0


def test_gated_expert_factory_gives_the_gated_reach_expert_also_inside_multitask():
    from vla_sim.agents.experts import GatedReachExpert, ReachExpert, make_gated_expert

    env = gym.make("vla_sim/Reach-v0", image_size=16)
    multi = gym.make("vla_sim/MultiTask-v0", image_size=16)
    try:
        assert type(make_gated_expert(env)) is GatedReachExpert
        assert type(make_expert(env)) is ReachExpert
        assert type(make_gated_expert(multi)._experts["reach"]) is GatedReachExpert
        assert type(make_expert(multi)._experts["reach"]) is ReachExpert
        assert type(make_gated_expert(multi)._experts["push"]) is type(
            make_expert(multi)._experts["push"])
    finally:
        env.close()
        multi.close()
