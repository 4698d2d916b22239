"""PPO's perception loss: the training envs' privileged state labels every minibatch's frames
for the policy's goal-state and grounding heads, in the units BC trained them in."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_ppo import TINY, _cfg, tiny_bc_checkpoint

import vla_sim  # noqa: F401
from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, save_policy
from vla_sim.agents.policies.vla import perception_parameters
from vla_sim.agents.training.bc import grounding_targets
from vla_sim.agents.training.ppo import build_ppo, perception_targets
from vla_sim.envs.goal_state import GOAL_XYZ_DIM
from vla_sim.envs.wrappers.privileged_state import PRIVILEGED_DIM, PrivilegedObservation

PERCEIVING = dict(TINY, aux_dim=GOAL_XYZ_DIM, grounding=True, spatial_lang=True,
                  spatial_queries=3, use_tokens=True)


def _perceiving_checkpoint(path):
    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**PERCEIVING))
    policy.set_normalization(np.zeros(22), np.full(22, 0.5), [0.1, -0.1, 0.0, 0.2],
                             [0.5, 0.5, 0.4, 0.9])
    return save_policy(policy, path)


@pytest.mark.parametrize("env_id", ["vla_sim/PickPlace-v0", "vla_sim/Reach-v0"])
def test_perception_targets_are_the_envs_goal_state_in_metres_and_image_coordinates(env_id):
    env = PrivilegedObservation(gym.make(env_id, image_size=32, randomization="medium"))
    policy = VLAPolicy(VLAPolicyConfig(**PERCEIVING))
    for seed in range(2):
        obs, _ = env.reset(seed=seed)
        for _ in range(3):
            obs, *_ = env.step(env.action_space.sample())
        goal = torch.as_tensor(env.unwrapped.task.goal_state(), dtype=torch.float32)[None]
        aux, ground = perception_targets(policy, torch.as_tensor(obs["privileged"])[None])
        assert torch.allclose(aux, goal[:, :GOAL_XYZ_DIM], atol=1e-5)
        expected = grounding_targets(goal, policy.config.cameras, policy.config.image_size)
        for key in ("uv", "visible", "holding"):
            assert torch.allclose(ground[key], expected[key], atol=1e-5), key
    env.close()


def test_a_policy_without_a_head_gets_no_target_for_it():
    policy = VLAPolicy(VLAPolicyConfig(**TINY))
    aux, ground = perception_targets(policy, torch.zeros(2, PRIVILEGED_DIM))
    assert aux is None and ground is None


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_perception_weight_trains_the_goal_state_head_on_the_rollout_frames(tmp_path, weight):
    # The goal-state head acts on nothing: only the perception loss can reach it.
    ckpt = _perceiving_checkpoint(tmp_path / "bc")
    cfg = _cfg(total_env_steps=64, n_steps=32, batch_size=16, n_epochs=2,
               value_warmup_rollouts=0, asymmetric_critic=True, perception_weight=weight)
    model = build_ppo(cfg, ckpt)
    head = model.policy.vla.aux_head.linear
    before = [p.detach().clone() for p in head.parameters()]
    model.learn(64)
    model.get_env().close()
    moved = any(not torch.equal(a, p) for a, p in zip(before, head.parameters()))
    assert moved == (weight > 0)


def test_perception_weight_needs_the_privileged_labels_and_a_perceiving_policy(tmp_path):
    with pytest.raises(ValueError, match="asymmetric_critic"):
        _cfg(perception_weight=1.0, asymmetric_critic=False)
    with pytest.raises(ValueError, match="perception_weight"):
        _cfg(perception_weight=-1.0)
    with pytest.raises(ValueError, match="goal-state or grounding head"):
        build_ppo(_cfg(perception_weight=1.0, asymmetric_critic=True),
                  tiny_bc_checkpoint(tmp_path / "plain"))


@pytest.mark.parametrize("pg_coef", [0.0, 1.0])
def test_pg_coef_zero_turns_the_policy_gradient_off(tmp_path, pg_coef):
    # No anchor, no entropy, no perception loss: only the policy gradient reaches the actor.
    cfg = _cfg(total_env_steps=64, n_steps=32, batch_size=16, n_epochs=2,
               value_warmup_rollouts=0, bc_coef=0.0, ent_coef=0.0, pg_coef=pg_coef,
               target_kl=None)
    model = build_ppo(cfg, tiny_bc_checkpoint(tmp_path / "bc"))
    head = model.policy.vla.action_head.mean
    before = [p.detach().clone() for p in head.parameters()]
    model.learn(64)
    model.get_env().close()
    moved = any(not torch.equal(a, p) for a, p in zip(before, head.parameters()))
    assert moved == (pg_coef > 0)
    with pytest.raises(ValueError, match="pg_coef"):
        _cfg(pg_coef=-0.5)


def test_perception_lr_gives_the_seeing_modules_their_own_rate_under_the_schedule(tmp_path):
    ckpt = _perceiving_checkpoint(tmp_path / "bc")
    cfg = _cfg(total_env_steps=64, n_steps=32, batch_size=16, n_epochs=1, lr=1e-4,
               value_warmup_rollouts=0, asymmetric_critic=True, perception_weight=1.0,
               perception_lr=3e-4)
    model = build_ppo(cfg, ckpt)
    vla = model.policy.vla
    groups = model.policy.optimizer.param_groups
    seeing = {id(p) for p in perception_parameters(vla)}
    assert seeing >= {id(p) for p in vla.extractor.vision.parameters()}
    assert seeing >= {id(p) for p in vla.ground_head.parameters()}
    assert {id(p) for p in groups[-1]["params"]} == seeing
    assert not seeing & {id(p) for p in groups[0]["params"]}  # not also in the actor's
    assert {id(p) for p in vla.action_head.parameters()} <= {id(p) for p in groups[0]["params"]}
    model.learn(64)
    model.get_env().close()
    assert groups[-1]["lr"] == pytest.approx(3 * groups[0]["lr"])
    assert groups[0]["lr"] == pytest.approx(1e-4)


def test_perception_lr_without_a_perception_loss_is_refused():
    with pytest.raises(ValueError, match="perception_weight"):
        _cfg(perception_lr=3e-4, asymmetric_critic=True)
    with pytest.raises(ValueError, match="perception_lr"):
        _cfg(perception_lr=0.0, perception_weight=1.0, asymmetric_critic=True)
