"""REINFORCE: discounted returns are right, and a tiny run writes a reloadable checkpoint."""

import gymnasium as gym
import numpy as np
import torch

import vla_sim  # noqa: F401
from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, load_policy, save_policy
from vla_sim.agents.training.reinforce import (
    ReinforceConfig,
    discounted_returns,
    train_reinforce,
)
from vla_sim.language.encoder import get_text_encoder

TINY = dict(image_size=32, channels=[8, 16], image_features=32, attn_dim=16, attn_heads=2,
            lang_features=16, state_hidden=16, trunk_hidden=[32], num_queries=2)


def tiny_bc_checkpoint(path):
    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**TINY))
    policy.set_normalization(np.zeros(22), np.full(22, 0.5), [0.1, -0.1, 0.0, 0.2],
                             [0.5, 0.5, 0.4, 0.9])
    return save_policy(policy, path)


def test_discounted_returns_stop_at_episode_end():
    rewards = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    alive = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    returns = discounted_returns(rewards, alive, 0.5)
    torch.testing.assert_close(returns, torch.tensor([[1.75, 1.0], [1.5, 0.0], [1.0, 0.0]]))


def _tiny_cfg(**overrides) -> ReinforceConfig:
    """A 40-step Reach run with two synchronous envs and the hashing text encoder."""
    base = dict(env_id="vla_sim/Reach-v0", randomization="low", text_encoder="hashing", n_envs=2,
                vector="sync", total_env_steps=40, max_episode_steps=10, eval_episodes=1,
                progress=False, value_warmup_batches=1)
    return ReinforceConfig(**{**base, **overrides})


def test_reinforce_short_run_writes_loadable_checkpoint(tmp_path):
    torch.set_num_threads(1)
    bc_dir = tiny_bc_checkpoint(tmp_path / "bc")
    cfg = _tiny_cfg(reward="language")
    result = train_reinforce(cfg, tmp_path / "run", init=bc_dir)
    assert result.steps >= 40 and len(result.eval_history) == 2
    policy = load_policy(tmp_path / "run" / "last")
    policy.text_encoder = get_text_encoder("hashing")
    env = gym.make("vla_sim/Reach-v0", image_size=32)
    obs, _ = env.reset(seed=0)
    action = policy.act(obs)
    assert action.shape == (4,) and np.all(np.abs(action) <= 1)
    env.close()
    bc = load_policy(bc_dir)
    assert not torch.equal(bc.action_head.mean.weight, policy.action_head.mean.weight)
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


class _Interrupt(Exception):
    pass


def test_interrupted_reinforce_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import pytest

    from vla_sim.agents.training import reinforce as rf

    torch.set_num_threads(1)
    bc_dir = tiny_bc_checkpoint(tmp_path / "bc")
    cfg = _tiny_cfg(reward="dense", max_episode_steps=8, checkpoint_every_env_steps=10, tensorboard=False)
    full = train_reinforce(cfg, tmp_path / "full", init=bc_dir)

    original = rf.save_training_checkpoint

    def save_then_crash(*args, **kwargs):
        original(*args, **kwargs)
        raise _Interrupt
    monkeypatch.setattr(rf, "save_training_checkpoint", save_then_crash)
    with pytest.raises(_Interrupt):
        train_reinforce(cfg, tmp_path / "cut", init=bc_dir)
    monkeypatch.setattr(rf, "save_training_checkpoint", original)
    with pytest.raises(ValueError, match="already holds a run"):
        train_reinforce(cfg, tmp_path / "cut", init=bc_dir)
    resumed = train_reinforce(cfg, tmp_path / "cut", init=bc_dir, resume=True)
    assert resumed.steps == full.steps
    a, b = load_policy(tmp_path / "full" / "last"), load_policy(tmp_path / "cut" / "last")
    for key, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_freeze_vision_keeps_camera_encoders_at_bc_weights_while_the_rest_learns(tmp_path):
    torch.set_num_threads(1)
    bc_dir = tiny_bc_checkpoint(tmp_path / "bc")
    cfg = _tiny_cfg(reward="dense", value_warmup_batches=0, freeze_vision=True, lr=1e-3)
    train_reinforce(cfg, tmp_path / "run", init=bc_dir)
    bc, last = load_policy(bc_dir), load_policy(tmp_path / "run" / "last")
    bc_state, last_state = bc.state_dict(), last.state_dict()
    vision = [k for k in bc_state if k.startswith("extractor.vision.")]
    assert vision and all(torch.equal(bc_state[k], last_state[k]) for k in vision)
    assert not torch.equal(bc_state["action_head.mean.weight"], last_state["action_head.mean.weight"])


def test_reinforce_pulls_toward_bc_with_the_configured_anchor(tmp_path, monkeypatch):
    from vla_sim.agents.training import reinforce as reinforce_mod

    torch.set_num_threads(1)
    bc_dir = tiny_bc_checkpoint(tmp_path / "bc")
    modes = []
    real = reinforce_mod.anchor_to_bc
    monkeypatch.setattr(reinforce_mod, "anchor_to_bc",
                        lambda dist, bc, mode="kl": modes.append(mode) or real(dist, bc, mode))
    train_reinforce(_tiny_cfg(reward="dense", value_warmup_batches=0, bc_anchor="mean"),
                    tmp_path / "run", init=bc_dir)
    assert modes and set(modes) == {"mean"}
