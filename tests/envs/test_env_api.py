"""The Gymnasium contract of every vla-sim env: checkers, determinism, bad input, isolation,
resource release, registration from a fresh process, and the optional observations."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pybullet as p
import pytest
from gymnasium.utils.env_checker import check_env
from vla_sim.envs.core import VLAEnv
from vla_sim.envs.registration import ENV_IDS

import vla_sim  # noqa: F401

ROBOTS = ("panda", "iiwa")


def make(env_id: str = "vla_sim/PickPlace-v0", **kw) -> gym.Env:
    kw.setdefault("image_size", 32)
    return gym.make(env_id, **kw)


def rollout(env: gym.Env, seed: int, actions: np.ndarray) -> list:
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return out


def assert_same_obs(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_gymnasium_env_checker_passes(env_id, robot):
    env = make(env_id, robot=robot)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a checker warning is a failure, except:
            # the state Box is unbounded by design (joint velocities, positions)
            warnings.filterwarnings("ignore", message=".*infinity.*")
            check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


@pytest.mark.parametrize("robot,env_id", [("panda", "vla_sim/PickPlace-v0"),
                                          ("iiwa", "vla_sim/Push-v0")])
def test_sb3_env_checker_passes_through_instruction_embedding(env_id, robot):
    import stable_baselines3.common.env_checker as sb3_checker
    import vla_sim.envs.wrappers.instruction_embedding as wrappers
    env = wrappers.InstructionEmbedding(make(env_id, robot=robot))
    try:
        sb3_checker.check_env(env, warn=False)
        obs, _ = env.reset(seed=0)
        assert "instruction" not in obs and obs["instruction_embedding"].dtype == np.float32
    finally:
        env.close()


def test_render_rgb_array_returns_render_size_frames():
    env = make(render_mode="rgb_array", render_size=48)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (48, 48, 3) and frame.dtype == np.uint8 and frame.std() > 0
    env.close()


def test_metadata_and_spaces():
    env = make()
    obs, info = env.reset(seed=3)
    assert env.unwrapped.metadata["render_fps"] == 20
    assert env.action_space == gym.spaces.Box(-1, 1, (4,), np.float32)
    assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8
    assert obs["state"].shape == (22,) and obs["state"].dtype == np.float32
    assert isinstance(obs["instruction"], str) and obs["instruction"] == info["instruction"]
    assert set(info) >= {"is_success", "task", "instruction", "randomization", "seed"}
    assert info["seed"] == 3 and info["task"] == "pick_place" and info["is_success"] is False
    assert env.spec.max_episode_steps == 100
    env.close()


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", ["vla_sim/PickPlace-v0", "vla_sim/MultiTask-v0"])
def test_same_seed_and_actions_give_identical_episodes(env_id):
    actions = np.random.default_rng(1).uniform(-1, 1, (15, 4)).astype(np.float32)
    kw = dict(randomization="high", cameras=("front", "wrist"))
    env_a, env_b = make(env_id, **kw), make(env_id, **kw)
    try:
        run_a, run_b = rollout(env_a, 7, actions), rollout(env_b, 7, actions)
        # and the same env again after other episodes in between
        rollout(env_a, 8, actions[:3])
        run_c = rollout(env_a, 7, actions)
    finally:
        env_a.close()
        env_b.close()
    for a, b, c in zip(run_a, run_b, run_c):
        for x in (b, c):
            assert_same_obs(a[0], x[0])
            assert a[1:] == x[1:]  # reward, terminated, truncated, info (or reset info)


def test_two_envs_in_one_process_do_not_interfere():
    actions = np.random.default_rng(2).uniform(-1, 1, (10, 4)).astype(np.float32)
    solo = make(randomization="medium")
    ref = rollout(solo, 11, actions)
    solo.close()
    env_a, env_b = make(randomization="medium"), make("vla_sim/Stack-v0", randomization="high")
    try:
        got = [env_a.reset(seed=11)]
        env_b.reset(seed=99)
        for a in actions:
            env_b.step(-a)  # the other env moves in between every step
            got.append(env_a.step(a))
    finally:
        env_a.close()
        env_b.close()
    for r, g in zip(ref, got):
        assert_same_obs(r[0], g[0])
        assert r[1:] == g[1:]


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((4, 1)), np.zeros(5), [0.0, 0.0]])
def test_wrong_action_shape_raises_naming_expected_shape(bad):
    env = make()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(4,\)"):
        env.unwrapped.step(bad)
    env.close()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_action_raises_naming_the_value(value):
    env = make()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="nan|inf"):
        env.unwrapped.step(np.array([0.0, value, 0.0, 0.0]))
    env.close()


def test_out_of_range_actions_are_clipped():
    env_a, env_b = make(), make()
    env_a.reset(seed=4)
    env_b.reset(seed=4)
    big = np.array([7.0, -3.0, 2.5, -9.0])
    for _ in range(3):
        obs_a, *_ = env_a.step(big)
        obs_b, *_ = env_b.step(np.clip(big, -1, 1))
    assert np.array_equal(obs_a["state"], obs_b["state"])
    assert np.array_equal(obs_a["image"], obs_b["image"])
    env_a.close()
    env_b.close()


def test_step_before_reset_raises():
    env = VLAEnv(image_size=32)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(4))
    env.close()


@pytest.mark.parametrize("kwargs,names", [
    ({"robot": "ur5"}, ["iiwa", "panda"]),
    ({"task": "juggle"}, ["pick_place", "push", "reach", "stack"]),
    ({"instruction_split": "test"}, ["train", "heldout"]),
    ({"randomization": "extreme"}, ["none", "low", "medium", "high"]),
    ({"cameras": ("front", "top")}, ["front", "wrist"]),
    ({"render_mode": "video"}, ["rgb_array", "human"]),
    ({"reward_type": "shaped"}, ["dense", "sparse"]),
])
def test_unknown_names_raise_listing_valid_names(kwargs, names):
    with pytest.raises(ValueError) as err:
        VLAEnv(**kwargs)
    for n in names:
        assert n in str(err.value)


def test_gymnasium_make_unknown_id_errors():
    with pytest.raises(gym.error.Error):
        gym.make("vla_sim/Juggle-v0")


def test_replay_sample_for_other_objects_is_rejected():
    env = make()
    _, info = env.reset(seed=1)
    sample = info["randomization"]
    with pytest.raises(ValueError, match="objects"):
        env.reset(seed=2, options={"randomization": sample})
    env.close()


# ---------------------------------------------------------------------------------------------
def test_close_releases_the_client_and_is_idempotent():
    env = make()
    env.reset(seed=0)
    cid = env.unwrapped.sim.client._client
    assert p.isConnected(physicsClientId=cid)
    env.close()
    assert not p.isConnected(physicsClientId=cid)
    assert p.getConnectionInfo(physicsClientId=cid)["isConnected"] == 0
    env.close()  # twice is fine


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_many(n: int) -> None:
    env = make(randomization="high")
    u = env.unwrapped
    for i in range(20):  # warm up: every texture the bank holds may be loaded by now
        env.reset(seed=i)
    bodies, rss = len(u.sim.bodies), _rss_mb()
    for i in range(n):
        env.reset(seed=1000 + i)
        if i % 10 == 0:
            env.step(env.action_space.sample())
    from vla_sim.randomization.sampler import N_TEXTURES

    # distractors vary the scene's body count by at most 2 either way; removed objects are
    # parked for reuse (sim/client.py), so PyBullet's count only grows to the pool's size
    assert abs(len(u.sim.bodies) - bodies) <= 2
    assert u.sim.client.getNumBodies() == len(u.sim.bodies) + u.sim.parked <= 3 + 5 * 6
    assert len(u.scene.textures) <= N_TEXTURES
    assert len(u.sim._shape_cache) < 20  # shapes are reused, not created per reset
    growth = _rss_mb() - rss
    env.close()
    assert growth < 40, f"RSS grew {growth:.1f} MB over {n} resets"
    # and no client leaks: a new connection reuses a low id
    cid = p.connect(p.DIRECT)
    p.disconnect(physicsClientId=cid)
    assert cid < 64


def test_200_resets_leak_neither_bodies_textures_nor_memory():
    _reset_many(200)


@pytest.mark.slow
def test_1000_resets_leak_neither_bodies_textures_nor_memory():
    _reset_many(1000)


def test_gymnasium_make_with_module_prefix_in_fresh_process():
    code = ("import sys, gymnasium as gym\n"
            "assert 'vla_sim' not in sys.modules\n"
            "env = gym.make('vla_sim:vla_sim/PickPlace-v0', image_size=32)\n"
            "obs, info = env.reset(seed=0)\n"
            "assert obs['image'].shape == (32, 32, 3), obs['image'].shape\n"
            "env.close()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
def test_wrist_depth_and_segmentation_observations():
    env = make(cameras=("front", "wrist"), depth=True, segmentation=True)
    obs, _ = env.reset(seed=0)
    space = env.observation_space
    assert obs["wrist_image"].shape == (32, 32, 3) and obs["wrist_image"].dtype == np.uint8
    assert obs["depth"].shape == (32, 32) and obs["depth"].dtype == np.float32
    assert obs["segmentation"].shape == (32, 32) and obs["segmentation"].dtype == np.int32
    for key in ("image", "wrist_image", "depth", "segmentation", "state"):
        assert space[key].contains(obs[key]), key
    # depth is metric: the table is between 0.2 and 1.5 m from the front camera
    assert 0.2 < float(np.median(obs["depth"])) < 1.5
    # segmentation shows the robot and the table by body id
    u = env.unwrapped
    ids = set(np.unique(obs["segmentation"]).tolist())
    assert u.sim.body_id("robot") in ids and u.sim.body_id("table") in ids
    # the wrist camera moves with the gripper
    before = obs["wrist_image"]
    for _ in range(5):
        obs, *_ = env.step(np.array([1.0, 0.0, -1.0, 1.0]))
    assert not np.array_equal(before, obs["wrist_image"])
    env.close()


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("render_size", [-5, 0, 7, 4097, 64.0, "64", True, None])
def test_bad_render_size_raises_naming_it_before_touching_pybullet(render_size):
    # -5 used to abort the process (std::bad_alloc) at render(), 0 divided by zero
    with pytest.raises(ValueError, match=rf"render_size must be an int in \[8, 2048\], "
                                         rf"got {re.escape(repr(render_size))}"):
        VLAEnv(render_mode="rgb_array", render_size=render_size)


def test_numpy_integer_sizes_are_accepted():
    env = VLAEnv(image_size=np.int64(32), render_size=np.int32(24), render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().shape == (24, 24, 3) and env.image_size == 32
    env.close()


@pytest.mark.parametrize("call", ["reset", "step", "render", "privileged_state"])
def test_use_after_close_raises_saying_the_env_is_closed(call):
    env = make(render_mode="rgb_array", render_size=32)
    env.reset(seed=0)
    env.close()
    env.close()  # twice is fine
    u = env.unwrapped
    args = {"reset": {"seed": 0}, "step": {"action": np.zeros(4)}}.get(call, {})
    with pytest.raises(RuntimeError, match=rf"{call}\(\) after close\(\): this VLAEnv is closed"):
        getattr(u, call)(**args)
    with pytest.raises(RuntimeError, match="is closed"):  # through gymnasium's wrappers too
        getattr(env, call)(**args) if call != "privileged_state" else u.privileged_state()
