"""The asymmetric critic's input: PrivilegedObservation adds a fixed-length vector, laid out as
documented, that agrees with the env's privileged_state() and goal_state() step by step."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import vla_sim  # noqa: F401  (registers the env ids)
from vla_sim.envs.goal_state import GOAL_STATE_LAYOUT
from vla_sim.envs.tasks import TASKS
from vla_sim.envs.wrappers.privileged_state import (
    PRIVILEGED_DIM,
    PRIVILEGED_FIELDS,
    PRIVILEGED_KEY,
    PRIVILEGED_LAYOUT,
    PRIVILEGED_TASKS,
    RELATIVE_SCALE,
    PrivilegedObservation,
    workspace_box,
)


def test_layout_covers_every_value_once_and_names_every_task():
    assert PRIVILEGED_DIM == sum(size for _, size in PRIVILEGED_FIELDS) == 36
    covered = sorted(i for s in PRIVILEGED_LAYOUT.values() for i in range(s.start, s.stop))
    assert covered == list(range(PRIVILEGED_DIM))
    assert set(PRIVILEGED_TASKS) == set(TASKS)


def _check_against_env(vector: np.ndarray, env: gymnasium.Env) -> None:
    base = env.unwrapped
    state = base.privileged_state()
    goal = base.task.goal_state()
    centre, half = workspace_box()
    L = PRIVILEGED_LAYOUT
    assert vector.shape == (PRIVILEGED_DIM,) and vector.dtype == np.float32
    roles = state["roles"]
    obj = np.asarray(state["objects"][roles["object"]]["position"])
    dest = (np.asarray(state["objects"][roles["destination"]]["position"])
            if "destination" in roles else obj)
    ee = np.asarray(state["ee_position"])
    g = vector[L["goal"]]
    # positions: back to metres; the image-plane and flag fields are the goal state's own
    np.testing.assert_allclose(g[GOAL_STATE_LAYOUT["object_xyz"]] * half + centre, obj, atol=1e-5)
    np.testing.assert_allclose(g[GOAL_STATE_LAYOUT["destination_xyz"]] * half + centre, dest,
                               atol=1e-5)
    rest = slice(GOAL_STATE_LAYOUT["destination_xyz"].stop, None)
    np.testing.assert_allclose(g[rest], goal[rest], atol=1e-6)
    assert g[GOAL_STATE_LAYOUT["holding"]][0] == float(state["holding"] == roles["object"])
    np.testing.assert_allclose(vector[L["ee_xyz"]] * half + centre, ee, atol=1e-5)
    np.testing.assert_allclose(vector[L["gripper"]][0] * 2 * base.robot.finger_max,
                               state["gripper_opening"], atol=1e-6)
    np.testing.assert_allclose(vector[L["object_from_ee"]] * RELATIVE_SCALE, obj - ee, atol=1e-5)
    np.testing.assert_allclose(vector[L["destination_from_object"]] * RELATIVE_SCALE, dest - obj,
                               atol=1e-5)
    yaw = state["objects"][roles["object"]]["yaw"]
    np.testing.assert_allclose(vector[L["object_yaw"]], [np.sin(yaw), np.cos(yaw)], atol=1e-6)
    assert vector[L["success"]][0] == float(state["success"])
    onehot = vector[L["task"]]
    assert onehot.sum() == 1.0 and PRIVILEGED_TASKS[int(onehot.argmax())] == state["task"]


@pytest.mark.parametrize("env_id", ["vla_sim/Reach-v0", "vla_sim/PickPlace-v0",
                                    "vla_sim/MultiTask-v0"])
def test_privileged_vector_matches_privileged_state_step_by_step(env_id):
    env = PrivilegedObservation(gymnasium.make(env_id, image_size=16))
    try:
        assert env.observation_space[PRIVILEGED_KEY].shape == (PRIVILEGED_DIM,)
        rng = np.random.default_rng(0)
        for seed in (0, 1):
            obs, _ = env.reset(seed=seed)
            _check_against_env(obs[PRIVILEGED_KEY], env)
            for _ in range(5):
                obs, *_ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
                _check_against_env(obs[PRIVILEGED_KEY], env)
                assert env.observation_space.contains(obs)
        # the other keys pass through untouched
        plain = gymnasium.make(env_id, image_size=16)
        plain_obs, _ = plain.reset(seed=3)
        obs, _ = env.reset(seed=3)
        assert set(obs) == set(plain_obs) | {PRIVILEGED_KEY}
        assert np.array_equal(obs["image"], plain_obs["image"])
        plain.close()
    finally:
        env.close()


def test_rl_training_stack_adds_the_privileged_key_only_for_an_asymmetric_critic():
    from vla_sim.agents.training.rl_common import make_training_env

    small = {"image_size": 16, "channels": [8, 16], "max_tokens": 8}
    plain = make_training_env("vla_sim/Reach-v0", small, reward="dense", text_encoder="hashing")
    asym = make_training_env("vla_sim/Reach-v0", {**small, "critic_privileged_dim": PRIVILEGED_DIM},
                             reward="dense", text_encoder="hashing")
    try:
        assert PRIVILEGED_KEY not in plain.observation_space.spaces
        obs, _ = asym.reset(seed=0)
        assert obs[PRIVILEGED_KEY].shape == (PRIVILEGED_DIM,)
        assert "instruction_embedding" in obs  # the rest of the stack is unchanged
    finally:
        plain.close()
        asym.close()
    with pytest.raises(ValueError, match="privileged"):
        make_training_env("vla_sim/Reach-v0", {**small, "critic_privileged_dim": 5},
                          reward="dense", text_encoder="hashing")
