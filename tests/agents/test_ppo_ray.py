"""PPO with its envs in Ray actors (``backend="ray"``) on a two-node cluster: the actors step
exactly the envs this process would, and a short run trains."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from tiny_policy import SMALL

import vla_sim  # noqa: F401  (registers the env ids)
from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, save_policy


@pytest.fixture(scope="module")
def bc_dir(tmp_path_factory):
    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**SMALL, text_encoder="hashing"))
    policy.set_normalization(np.zeros(22), np.full(22, 0.5), [0.1, -0.1, 0.0, 0.2],
                             [0.5, 0.5, 0.4, 0.9])
    return save_policy(policy, tmp_path_factory.mktemp("bc") / "bc")


def _cfg(**kw):
    from vla_sim.agents.training.configs import PPOConfig

    base = {"env_id": "vla_sim/Reach-v0", "randomization": "low", "reward": "dense",
            "text_encoder": "hashing", "n_envs": 2, "n_steps": 16, "batch_size": 16,
            "n_epochs": 1, "total_env_steps": 64, "eval_episodes": 1, "progress": False,
            "max_episode_steps": 12, "value_warmup_rollouts": 1, "tensorboard": False,
            "backend": "ray"}
    base.update(kw)
    return PPOConfig(**base)


def test_ray_env_workers_step_the_same_envs_as_this_process(ray_cluster, bc_dir):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from vla_sim.agents.policies import load_policy
    from vla_sim.agents.training.ray_vec_env import RayVecEnv
    from vla_sim.agents.training.rl_common import make_training_env
    from vla_sim.config import config_to_dict

    fn = functools.partial(make_training_env, "vla_sim/Reach-v0",
                           config_to_dict(load_policy(bc_dir).config), reward="dense",
                           text_encoder="hashing", max_episode_steps=4, torch_threads=0)
    remote, local = RayVecEnv([fn, fn], address=ray_cluster.address), DummyVecEnv([fn, fn])
    try:
        assert remote.observation_space == local.observation_space
        for vec in (remote, local):
            vec.seed(123)
        obs = [remote.reset(), local.reset()]
        rng, resets = np.random.default_rng(0), 0
        for _ in range(6):  # past the 4-step time limit: auto-reset and terminal observation
            for key in obs[0]:
                np.testing.assert_array_equal(obs[0][key], obs[1][key], err_msg=key)
            actions = rng.uniform(-1, 1, size=(2, 4)).astype(np.float32)
            (o1, r1, d1, i1), (o2, r2, d2, i2) = remote.step(actions), local.step(actions)
            # DummyVecEnv keeps rewards in float32, SubprocVecEnv (and RayVecEnv) as given
            np.testing.assert_array_equal(r1.astype(np.float32), r2)
            np.testing.assert_array_equal(d1, d2)
            assert [sorted(i) for i in i1] == [sorted(i) for i in i2]
            for a, b in zip(i1, i2):
                if "terminal_observation" in a:
                    resets += 1
                    for key in a["terminal_observation"]:
                        np.testing.assert_array_equal(a["terminal_observation"][key],
                                                      b["terminal_observation"][key])
            obs = [o1, o2]
        assert resets == 2  # both envs hit the time limit once
        assert remote.get_attr("render_mode") == local.get_attr("render_mode")
    finally:
        remote.close()
        local.close()


def test_short_ppo_run_with_ray_env_workers_trains(ray_cluster, bc_dir):
    from vla_sim.agents.policies import load_policy
    from vla_sim.agents.training.ppo import build_ppo
    from vla_sim.agents.training.ray_vec_env import RayVecEnv

    cfg = _cfg(ray_address=ray_cluster.address)
    model = build_ppo(cfg, bc_dir)
    try:
        vec = model.get_env()
        while hasattr(vec, "venv"):  # under SB3's VecTransposeImage and VecNormalize
            vec = vec.venv
        assert isinstance(vec, RayVecEnv)
        before = {k: v.clone() for k, v in model.policy.vla.state_dict().items()}
        model.learn(total_timesteps=cfg.total_env_steps)
        assert model.num_timesteps == 64  # 2 rollouts of 16 steps x 2 envs
        loss = model.logger.name_to_value["train/loss"]
        assert math.isfinite(loss)
        after = model.policy.vla.state_dict()
        assert not torch.equal(before["action_head.mean.weight"], after["action_head.mean.weight"])
        bc = load_policy(bc_dir)
        assert torch.equal(bc.action_head.action_std, after["action_head.action_std"])
    finally:
        model.get_env().close()
