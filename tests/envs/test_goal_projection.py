"""The goal state's image-plane labels: projected with each frame's real camera matrices, they
land on the named objects' pixels; points off-image are clamped and marked; the holding flag
follows the grasp."""

from __future__ import annotations

import dataclasses

import gymnasium
import numpy as np
import pytest
from vla_sim.envs.goal_state import (
    GOAL_STATE_DIM,
    GOAL_STATE_LAYOUT,
    GOAL_STATE_NAMES,
    GOAL_XYZ_DIM,
    PROJECTED_CAMERAS,
)

import vla_sim  # noqa: F401  (registers the env ids)
from vla_sim.sim.camera import CameraPose, project, view_projection

SIZE = 64


def pixel_of(uv: np.ndarray, size: int = SIZE) -> tuple[int, int]:
    """(row, col) of the pixel that contains normalised image coordinates ``uv``."""
    col = min(int((uv[0] + 1.0) / 2.0 * size), size - 1)
    row = min(int((uv[1] + 1.0) / 2.0 * size), size - 1)
    return row, col


def test_goal_state_layout_names_every_value_once():
    assert GOAL_STATE_DIM == len(GOAL_STATE_NAMES) == len(set(GOAL_STATE_NAMES)) == 19
    assert GOAL_STATE_LAYOUT["object_xyz"] == slice(0, 3)
    assert GOAL_STATE_LAYOUT["destination_xyz"].stop == GOAL_XYZ_DIM  # old datasets' prefix
    covered = sorted(i for s in GOAL_STATE_LAYOUT.values() for i in range(s.start, s.stop))
    assert covered == list(range(GOAL_STATE_DIM))


@pytest.mark.parametrize("randomization", ["low", "high"])
def test_projected_object_and_destination_land_on_their_pixels_in_both_cameras(randomization):
    """Wherever the centre is not hidden behind something nearer (the gripper, the held
    object), the projected pixel belongs to the object's segmentation mask; the front camera
    is re-drawn per episode and the wrist camera follows the end-effector."""
    from vla_sim.agents.experts import make_expert

    env = gymnasium.make("vla_sim/PickPlace-v0", image_size=SIZE, cameras=("front", "wrist"),
                         randomization=randomization)
    u = env.unwrapped
    expert = make_expert(env)
    checked = {cam: 0 for cam in PROJECTED_CAMERAS}
    front_poses = set()
    try:
        for seed in range(3):
            obs, _ = env.reset(seed=seed)
            front_poses.add(u.scene.camera_pose("front"))
            done = False
            while not done:
                goal = u.task.goal_state()
                for cam in PROJECTED_CAMERAS:
                    pose = u.scene.camera_pose(cam)
                    frame = u.scene.render_camera(cam, SIZE, depth=True, segmentation=True)
                    for i, role in enumerate(("object", "destination")):
                        if not goal[GOAL_STATE_LAYOUT[f"{cam}_visible"]][i]:
                            continue
                        name = u.instance.roles[role]
                        row, col = pixel_of(goal[GOAL_STATE_LAYOUT[f"{cam}_{role}_uv"]])
                        centre = goal[GOAL_STATE_LAYOUT[f"{role}_xyz"]]
                        depth = (view_projection(pose) @ np.r_[centre, 1.0])[3]
                        if frame["depth"][row, col] < depth - 0.03:
                            continue  # something nearer hides the centre
                        assert frame["segmentation"][row, col] == u.sim.body_id(name), \
                            (cam, role, seed, row, col)
                        checked[cam] += 1
                obs, _, terminated, truncated, _ = env.step(expert.act(obs))
                done = terminated or truncated
    finally:
        env.close()
    assert min(checked.values()) > 50, checked
    if randomization == "high":
        assert len(front_poses) == 3  # each episode's own front camera was used


def test_points_behind_or_outside_the_camera_are_marked_invisible_and_clamped():
    pose = CameraPose(eye=(0.0, 0.0, 1.0), target=(0.0, 0.0, 0.0), up=(1.0, 0.0, 0.0), fov=60.0)
    points = [(0.0, 0.0, 0.0),      # straight ahead: the image centre
              (0.0, 0.0, 2.0),      # behind the camera
              (5.0, 0.0, 0.0),      # far outside the field of view
              (0.1, 0.0, 0.0)]      # in view, off centre
    uv, visible = project(pose, points)
    assert visible.tolist() == [True, False, False, True]
    np.testing.assert_allclose(uv[0], [0.0, 0.0], atol=1e-6)
    assert np.all(np.abs(uv) <= 1.0) and np.all(np.isfinite(uv))
    assert np.abs(uv[2]).max() == 1.0  # clamped to the edge it left by
    # Up is +x in the world: a point further along +x is higher in the image (smaller v).
    assert uv[3, 1] < 0 and abs(uv[3, 0]) < 1e-6


def test_holding_flag_is_set_between_the_grasp_and_the_release():
    from vla_sim.agents.experts import make_expert

    env = gymnasium.make("vla_sim/PickPlace-v0", image_size=32, randomization="low")
    u = env.unwrapped
    expert = make_expert(env)
    try:
        obs, _ = env.reset(seed=0)
        flags, held, done = [], [], False
        while not done:
            flags.append(u.task.goal_state()[GOAL_STATE_LAYOUT["holding"]][0])
            held.append(u.task.held_object() == u.instance.roles["object"])
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            done = terminated or truncated
    finally:
        env.close()
    assert info["is_success"]
    assert flags[0] == 0.0 and max(flags) == 1.0
    assert flags == [float(h) for h in held]


def test_a_resumed_old_dataset_keeps_its_six_goal_values():
    from vla_sim.data.collect import fit_env_states
    from vla_sim.data.writer import EncodedEpisode

    states = np.arange(3 * GOAL_STATE_DIM, dtype=np.float32).reshape(3, GOAL_STATE_DIM)
    enc = EncodedEpisode(videos={}, states=np.zeros((3, 22), np.float32),
                         actions=np.zeros((3, 4), np.float32), rewards=np.zeros(3, np.float32),
                         dones=np.zeros(3, bool), instruction="x", metadata={}, image_stats={},
                         first_frame_sha256="", env_states=states)
    np.testing.assert_array_equal(fit_env_states(enc, GOAL_XYZ_DIM).env_states, states[:, :6])
    assert fit_env_states(enc, GOAL_STATE_DIM) is enc
    assert fit_env_states(dataclasses.replace(enc, env_states=None), 6).env_states is None
