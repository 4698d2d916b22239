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


def test_scene_frames_are_rendered_at_the_runs_level_once_and_read_back_on_resume(tmp_path):
    from vla_sim.agents.training.ppo import attach_scene_frames
    from vla_sim.data.scene_frames import load_scene_frames

    ckpt = _perceiving_checkpoint(tmp_path / "bc")
    cfg = _cfg(asymmetric_critic=True, perception_weight=1.0, scene_frames=4, scene_views=2,
               randomization="medium", n_envs=1)
    model = build_ppo(cfg, ckpt)
    path = tmp_path / "run" / "scene_frames.npz"
    path.parent.mkdir()
    assert attach_scene_frames(model, cfg, path) is not None  # rendered
    first = load_scene_frames(path)
    key = model.policy.vla.config.image_keys[0]
    assert len(model.scene) == 4 and first.images[key].shape[1:3] == (32, 32)
    assert attach_scene_frames(model, cfg, path) is None  # read back, not rendered again
    assert np.array_equal(load_scene_frames(path).images[key], first.images[key])
    low = tmp_path / "low.npz"
    attach_scene_frames(model, _cfg(asymmetric_critic=True, perception_weight=1.0,
                                    scene_frames=4, scene_views=2, n_envs=1), low)
    # the same scenes at another randomization level look different
    assert not np.array_equal(load_scene_frames(low).images[key], first.images[key])
    model.get_env().close()


def test_scene_frames_add_their_perception_loss_to_every_minibatch(tmp_path):
    from vla_sim.agents.training.ppo import attach_scene_frames

    ckpt = _perceiving_checkpoint(tmp_path / "bc")
    cfg = _cfg(total_env_steps=64, n_steps=32, batch_size=16, n_epochs=2,
               value_warmup_rollouts=0, asymmetric_critic=True, perception_weight=1.0,
               scene_frames=4, scene_views=2, n_envs=1)
    model = build_ppo(cfg, ckpt)
    attach_scene_frames(model, cfg, tmp_path / "scene.npz")
    calls = []
    loss = model.scene.loss
    model.scene.loss = lambda policy: calls.append(1) or loss(policy)
    model.learn(64)
    model.get_env().close()
    assert len(calls) == 2 * 2 * (32 // 16)  # updates x epochs x minibatches


def test_the_scene_loss_is_the_heads_error_on_the_frames_own_labels(tmp_path):
    from vla_sim.agents.training.ppo import ScenePerception
    from vla_sim.data.collect import CollectConfig
    from vla_sim.data.scene_frames import render_scene_frames
    from vla_sim.language.encoder import get_text_encoder

    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**PERCEIVING))
    frames = render_scene_frames(CollectConfig(env="Reach", cameras=("front", "wrist"),
                                               image_size=32, progress=False), 3, 2)
    scene = ScenePerception(frames, policy, get_text_encoder("hashing"), 6, 0)
    opt = torch.optim.Adam(policy.parameters(), 3e-3)
    losses = []
    for _ in range(40):  # the same six frames every step: the heads can fit their labels
        scene.rng = np.random.default_rng(0)
        value = scene.loss(policy)
        losses.append(value.item())
        opt.zero_grad()
        value.backward()
        opt.step()
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]


def test_scene_frames_need_the_perception_loss():
    with pytest.raises(ValueError, match="perception_weight"):
        _cfg(scene_frames=100, asymmetric_critic=True)
    with pytest.raises(ValueError, match="scene_frames"):
        _cfg(scene_frames=-1)
    with pytest.raises(ValueError, match="scene_batch"):
        _cfg(scene_frames=100, scene_batch=0, perception_weight=1.0, asymmetric_critic=True)
