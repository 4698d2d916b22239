"""Scene frames: the gripper teleported where asked, labels that are the env's own goal state at
that frame, the same frames for any worker count, and a file that round-trips or is named when
damaged."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import vla_sim  # noqa: F401  (registers the env ids)
from vla_sim.data import scene_frames
from vla_sim.data.collect import CollectConfig
from vla_sim.data.scene_frames import (
    NEAR_STD,
    TABLE_HIGH,
    TABLE_LOW,
    gripper_places,
    load_scene_frames,
    render_scene_frames,
    save_scene_frames,
    scene_frames_file,
)
from vla_sim.envs.goal_state import GOAL_STATE_DIM
from vla_sim.utils.seeding import episode_seed

SETTINGS = CollectConfig(out="", env="Push", image_size=16, cameras=("front", "wrist"),
                         progress=False)


@pytest.fixture(scope="module")
def frames():
    return render_scene_frames(SETTINGS, scenes=3, views=2, seed=5)


def test_place_gripper_puts_the_grasp_frame_where_asked():
    env = gym.make("vla_sim/Push-v0", image_size=16)
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.place_gripper([0.0, 0.0, 0.1], 0.02)
    first, _ = env.reset(seed=3)
    for target in ([0.0, 0.1, 0.1], [-0.2, -0.15, 0.04], [0.1, 0.2, 0.25]):
        obs = env.unwrapped.place_gripper(target, 0.01)
        np.testing.assert_allclose(obs["state"][:3], target, atol=0.01)
        assert obs["state"][7] == pytest.approx(0.02, abs=0.002)  # two fingers, 1 cm each
        assert obs["image"].shape == (16, 16, 3)
        assert not np.array_equal(obs["image"], first["image"])  # the arm moved in the frame
    far = env.unwrapped.place_gripper([2.0, 0.0, 0.1], 0.0)  # clipped to the workspace
    assert far["state"][0] < 0.31
    with pytest.raises(RuntimeError, match="reset"):  # no longer a state of the episode
        env.step(np.zeros(4))
    env.reset(seed=3)
    env.step(np.zeros(4))
    with pytest.raises(ValueError, match="position"):
        env.unwrapped.place_gripper([0.0, np.nan, 0.1], 0.0)
    env.close()


def test_gripper_places_alternate_near_the_anchors_and_over_the_table():
    rng = np.random.default_rng(0)
    anchors = np.array([[0.05, 0.1, 0.02]])
    positions, openings = gripper_places(rng, anchors, 400, 0.04)
    near, anywhere = positions[0::2], positions[1::2]
    assert np.abs(near[:, :2] - anchors[0, :2]).max() < 6 * NEAR_STD
    assert np.abs(near[:, :2].mean(0) - anchors[0, :2]).max() < 0.01
    assert near[:, 2].min() >= 0.02 and near[:, 2].max() <= 0.15
    assert np.all(anywhere >= TABLE_LOW) and np.all(anywhere <= TABLE_HIGH)
    assert anywhere[:, 0].std() > 0.1  # spread over the table, not near the anchor
    assert openings.min() >= 0.0 and openings.max() <= 0.04


def test_labels_are_the_envs_goal_state_at_each_rendered_frame(frames):
    assert len(frames.states) == 6 and frames.env_states.shape == (6, GOAL_STATE_DIM)
    assert set(frames.images) == {"image", "wrist_image"}
    assert frames.episode_index.tolist() == [0, 0, 1, 1, 2, 2]
    assert not frames.actions.any()
    env = gym.make("vla_sim/Push-v0", image_size=16, cameras=("front", "wrist"))
    base = env.unwrapped
    for scene in range(3):
        obs, _ = env.reset(seed=episode_seed(5, scene))
        roles = base.instance.roles
        anchors = np.array([base.task.position(roles[k]) for k in ("object", "destination")])
        positions, openings = gripper_places(np.random.default_rng([5, scene]), anchors, 2,
                                             base.robot.finger_max)
        for view in range(2):
            i = 2 * scene + view
            obs = base.place_gripper(positions[view], float(openings[view]))
            np.testing.assert_array_equal(frames.images["image"][i], obs["image"])
            np.testing.assert_array_equal(frames.images["wrist_image"][i], obs["wrist_image"])
            np.testing.assert_allclose(frames.env_states[i], base.task.goal_state(), atol=1e-6)
            np.testing.assert_allclose(frames.env_states[i, :3], anchors[0], atol=1e-6)
            assert frames.instructions[frames.instruction_index[i]] == obs["instruction"]
    env.close()


def test_two_workers_render_the_same_frames_as_one(frames, monkeypatch):
    monkeypatch.setattr(scene_frames, "CHUNK_SCENES", 1)  # three jobs over two workers
    again = render_scene_frames(SETTINGS, scenes=3, views=2, seed=5, workers=2)
    for key in frames.images:
        np.testing.assert_array_equal(again.images[key], frames.images[key])
    np.testing.assert_array_equal(again.env_states, frames.env_states)
    np.testing.assert_array_equal(again.states, frames.states)


def test_saved_frames_load_back_identically_and_a_damaged_file_is_named(frames, tmp_path):
    path = tmp_path / "frames.npz"
    save_scene_frames(frames, path)
    back = load_scene_frames(path)
    for key in frames.images:
        np.testing.assert_array_equal(back.images[key], frames.images[key])
    np.testing.assert_array_equal(back.env_states, frames.env_states)
    assert back.instructions == frames.instructions
    np.testing.assert_array_equal(back.instruction_index, frames.instruction_index)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="frames.npz"):
        load_scene_frames(path)
    with pytest.raises(ValueError, match="no scene frames"):
        load_scene_frames(tmp_path / "missing.npz")


def test_scene_frames_file_renders_whole_scenes_once_then_reads_them_back(frames, tmp_path,
                                                                         monkeypatch):
    calls = []

    def render(settings, scenes, views, seed, workers):
        calls.append((scenes, views, seed))
        return frames

    monkeypatch.setattr(scene_frames, "render_scene_frames", render)
    path = tmp_path / "frames.npz"
    first, seconds = scene_frames_file(path, SETTINGS, frames=5, views=2, seed=7)
    assert calls == [(3, 2, 7)] and seconds is not None and path.is_file()
    again, seconds = scene_frames_file(path, SETTINGS, frames=5, views=2, seed=7)
    assert len(calls) == 1 and seconds is None
    np.testing.assert_array_equal(again.states, first.states)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="scenes >= 1"):
        render_scene_frames(SETTINGS, scenes=0)
