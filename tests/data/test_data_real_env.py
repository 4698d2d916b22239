"""Collection with the real Reach env: a recorded seed + randomization sample replays the episode."""

from __future__ import annotations

import gymnasium
import numpy as np

import vla_sim  # noqa: F401  (registers the env ids)
from vla_sim.data import frame_sha256, open_dataset
from vla_sim.data.collect import CollectConfig, collect, executed_actions


def test_reach_episode_replays_from_recorded_seed_and_sample(tmp_path):
    r = collect(CollectConfig(out=str(tmp_path / "reach"), env="Reach", episodes=2, image_size=32,
                              noise=0.1, progress=False))
    assert r.successes == 2
    ds = open_dataset(tmp_path / "reach")
    fp = ds.info["vla_sim"]["fingerprint"]
    assert fp["renderer"] == "ER_TINY_RENDERER"
    assert {"vla_sim", "pybullet", "numpy", "torch", "gymnasium"} <= set(fp["versions"])
    assert "git_revision" in fp
    env = gymnasium.make("vla_sim/Reach-v0", image_size=32, randomization="low")
    for i in range(ds.num_episodes):
        rec, arr = ds.episode_record(i), ds.episode_arrays(i)
        assert rec["task"] == "reach" and rec["success"]
        obs, _ = env.reset(seed=rec["seed"], options={"randomization": rec["randomization"]})
        assert frame_sha256(obs["image"]) == rec["first_frame_sha256"]
        assert obs["instruction"] == rec["instruction"]
        assert rec["metadata"]["roles"] == env.unwrapped.instance.roles  # for language augmentation
        states, goals = [], []
        executed = executed_actions(arr["actions"], rec["seed"], 0.1)
        assert not np.allclose(executed, arr["actions"])  # labels are the clean expert actions
        for action in executed:
            states.append(obs["state"])
            goals.append(env.unwrapped.task.goal_state())
            obs, _, terminated, truncated, info = env.step(action)
        np.testing.assert_allclose(np.stack(states), arr["states"], atol=1e-5)
        # observation.environment_state: the instructed object's position (twice for Reach).
        np.testing.assert_allclose(arr["env_states"], np.stack(goals), atol=1e-5)
        target = env.unwrapped.task.position(env.unwrapped.instance.roles["object"])
        np.testing.assert_allclose(arr["env_states"][-1, :3], target, atol=1e-5)
        np.testing.assert_allclose(arr["env_states"][:, :3], arr["env_states"][:, 3:6])
        assert info["is_success"] and terminated
    env.close()
