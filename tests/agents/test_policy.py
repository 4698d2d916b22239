"""VLA policy: shapes, act() on raw/wrapped single/batched obs, checkpoints, SB3 seam."""

import json

import numpy as np
import pytest
import torch
from tiny_policy import SMALL

from vla_sim.agents.policies import (
    CheckpointMismatchError,
    VLAFeaturesExtractor,
    VLAPolicy,
    VLAPolicyConfig,
    build_observation_space,
    load_policy,
    save_policy,
)
from vla_sim.config import ConfigError, config_from_dict
from vla_sim.language.encoder import HashingTextEncoder


def make_policy(**overrides) -> VLAPolicy:
    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**{**SMALL, **overrides}))
    policy.text_encoder = HashingTextEncoder()
    # Non-trivial normalisation and weights so that actions differ between inputs.
    policy.set_normalization(np.arange(22) * 0.1, np.full(22, 2.0), [0.1, 0, 0, 0.5], [0.3] * 4)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return policy


def raw_obs(rng, batch=None, size=16, instruction="reach the red cube"):
    shape = (size, size, 3) if batch is None else (batch, size, size, 3)
    obs = {"image": rng.integers(0, 256, shape, dtype=np.uint8),
           "state": rng.standard_normal(22 if batch is None else (batch, 22)).astype(np.float32)}
    obs["instruction"] = instruction if batch is None else [instruction] * batch
    return obs


@pytest.mark.parametrize("head", ["gaussian", "discrete"])
@pytest.mark.parametrize("vision", ["cnn", "resnet"])
def test_forward_shapes(head, vision):
    policy = make_policy(head=head, vision=vision)
    batch, _ = policy.prepare_obs(raw_obs(np.random.default_rng(0), batch=5))
    out, value = policy(batch)
    assert out.shape == ((5, 4) if head == "gaussian" else (5, 4, 256))
    assert value.shape == (5,)
    logp, ent, v = policy.evaluate_actions(batch, torch.zeros(5, 4))
    assert logp.shape == ent.shape == v.shape == (5,)
    loss = policy.bc_loss(batch, torch.zeros(5, 4))
    loss.backward()
    assert all(p.grad is not None for p in policy.action_head.parameters() if p.requires_grad
               and p is not getattr(policy.action_head, "log_std", None))


def test_act_single_raw_obs_returns_clipped_action():
    policy = make_policy()
    action = policy.act(raw_obs(np.random.default_rng(1)))
    assert action.shape == (4,) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 1.0)


def test_act_runs_in_eval_mode_and_leaves_the_mode_as_it_found_it(monkeypatch):
    policy = make_policy()
    obs = raw_obs(np.random.default_rng(3))
    seen = []
    real = policy.distribution
    monkeypatch.setattr(policy, "distribution",
                        lambda batch: seen.append(policy.training) or real(batch))
    policy.train()
    policy.act(obs)
    assert seen == [False] and policy.training and policy.extractor.training
    walks = []
    monkeypatch.setattr(policy, "train", lambda mode=True: walks.append(mode))
    policy.training = False
    policy.act(obs)  # already in eval mode: no walk over the submodules
    assert seen == [False, False] and walks == []


def test_act_batch_matches_singles_and_wrapped_obs():
    policy = make_policy()
    rng = np.random.default_rng(2)
    obs = raw_obs(rng, batch=3)
    obs["instruction"] = ["reach the red cube", "push the blue cube", "stack the cubes"]
    batched = policy.act(obs)
    singles = np.stack([policy.act({"image": obs["image"][i], "state": obs["state"][i],
                                    "instruction": obs["instruction"][i]}) for i in range(3)])
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    wrapped = {k: v for k, v in obs.items() if k != "instruction"}
    wrapped.update(policy.text_encoder.features(obs["instruction"], policy.config.max_tokens))
    np.testing.assert_allclose(policy.act(wrapped), batched, atol=1e-6)
    assert not np.allclose(batched[0], batched[1])  # instruction and image matter


def test_an_instruction_is_encoded_once_per_episode_and_again_after_the_weights_change():
    policy = make_policy()
    rng = np.random.default_rng(4)
    calls = []
    real = policy.extractor.language._encode
    policy.extractor.language._encode = lambda *a: calls.append(1) or real(*a)
    first = [raw_obs(rng) for _ in range(3)]
    actions = [policy.act(obs) for obs in first]
    assert len(calls) == 1  # three steps, one instruction: encoded once
    policy.extractor.language._memo = None  # the memo changes nothing it computes
    assert np.array_equal(policy.act(first[2]), actions[2]) and len(calls) == 2
    policy.act(raw_obs(rng, instruction="push the blue cube"))  # a new instruction: encoded
    assert len(calls) == 3
    with torch.no_grad():  # an in-place update of the weights (as an optimiser step does)
        policy.extractor.language.pooled_proj.weight.mul_(1.5)
    changed = policy.act(first[0])
    assert len(calls) == 4 and not np.array_equal(changed, actions[0])
    obs, _ = policy.prepare_obs(first[0])
    policy.train()  # training (autograd on) never reuses a result
    for _ in range(2):
        policy.extractor(obs)
    assert len(calls) == 6


def test_uint8_hwc_and_float_chw_images_give_the_same_features():
    policy = make_policy()
    batch, _ = policy.prepare_obs(raw_obs(np.random.default_rng(3), batch=2))
    as_float_chw = dict(batch, image=batch["image"].permute(0, 3, 1, 2).float() / 255.0)
    with torch.no_grad():
        torch.testing.assert_close(policy.extractor(batch), policy.extractor(as_float_chw))


def test_stochastic_actions_vary_and_deterministic_do_not():
    policy = make_policy()
    obs = raw_obs(np.random.default_rng(4))
    assert np.array_equal(policy.act(obs), policy.act(obs))
    torch.manual_seed(0)
    assert not np.array_equal(policy.act(obs, deterministic=False),
                              policy.act(obs, deterministic=False))


@pytest.mark.parametrize("head", ["gaussian", "discrete"])
def test_sampled_actions_repeat_after_a_reset_with_the_same_seed(head):
    policy = make_policy(head=head)
    obs = raw_obs(np.random.default_rng(4))

    def episode(seed):
        policy.reset(seed=seed)
        return np.stack([policy.act(obs, deterministic=False) for _ in range(3)])

    first = episode(5)
    assert np.array_equal(first, episode(5))
    assert not np.array_equal(first, episode(6))
    assert not np.array_equal(first[0], first[1])  # a fresh draw every step
    assert np.array_equal(policy.act(obs), policy.act(obs))  # the mode is untouched


@pytest.mark.parametrize("name, used", [("pool", "spatial_softmax"),
                                        ("spatial_offsets", True)])
def test_a_checkpoint_of_a_retired_option_is_refused_by_name_and_defaults_still_load(
        tmp_path, name, used):
    policy = make_policy()
    save_policy(policy, tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "config.json"
    data = json.loads(path.read_text())
    # checkpoints written before the options went record their defaults: they still load
    data["policy"].update(pool="flatten", keypoints=32, coord_conv=False, temporal_ensemble=False,
                          spatial_offsets=False)
    path.write_text(json.dumps(data))
    assert load_policy(tmp_path / "ckpt").config == policy.config
    data["policy"][name] = used
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"{name}={used!r}.*removed"):
        load_policy(tmp_path / "ckpt")


@pytest.mark.parametrize("head", ["gaussian", "discrete"])
def test_checkpoint_reloads_to_identical_actions(tmp_path, head):
    policy = make_policy(head=head)
    obs = raw_obs(np.random.default_rng(5), batch=4)
    save_policy(policy, tmp_path / "ckpt", meta={"step": 7})
    loaded = load_policy(tmp_path / "ckpt")
    loaded.text_encoder = policy.text_encoder
    np.testing.assert_array_equal(loaded.act(obs), policy.act(obs))
    data = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert data["policy_type"] == "vla" and data["meta"] == {"step": 7}
    assert data["normalization"]["state_std"][0] == 2.0
    assert loaded.config == policy.config


def test_loading_into_a_different_architecture_names_the_mismatch(tmp_path):
    save_policy(make_policy(), tmp_path / "ckpt")
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatches .*trunk"):
        load_policy(tmp_path / "ckpt", config=VLAPolicyConfig(**{**SMALL, "trunk_hidden": [64]}))
    with pytest.raises(CheckpointMismatchError, match=r"missing keys .*wrist"):
        load_policy(tmp_path / "ckpt", config=VLAPolicyConfig(**{**SMALL,
                                                                 "cameras": ["front", "wrist"]}))


def test_checkpoint_config_with_unknown_key_is_rejected(tmp_path):
    save_policy(make_policy(), tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "config.json"
    data = json.loads(path.read_text())
    data["policy"]["n_layers"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointMismatchError, match="n_layers"):
        load_policy(tmp_path / "ckpt")


@pytest.mark.parametrize("bad, message", [
    (dict(vision="vit"), "vision must be one of"),
    (dict(head="mdn"), "head must be one of"),
    (dict(cameras=["top"]), "unknown cameras"),
    (dict(image_size=18), "image_size 18"),
    (dict(attn_dim=10, attn_heads=4), "attn_dim"),
])
def test_config_validation_names_the_bad_value(bad, message):
    with pytest.raises(ValueError, match=message):
        VLAPolicyConfig(**{**SMALL, **bad})


def test_config_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match="hidden_layers"):
        config_from_dict(VLAPolicyConfig, {"hidden_layers": 3})


def test_extractor_rejects_text_space_and_mismatched_shapes():
    from gymnasium import spaces

    cfg = VLAPolicyConfig(**SMALL)
    space = build_observation_space(cfg)
    raw = spaces.Dict({**{k: v for k, v in space.spaces.items() if not k.startswith("instr")},
                       "instruction": spaces.Text(50)})
    with pytest.raises(ValueError, match="InstructionEmbedding"):
        VLAFeaturesExtractor(raw, cfg)
    bad = spaces.Dict({**space.spaces, "state": spaces.Box(-1, 1, (10,), np.float32)})
    with pytest.raises(ValueError, match=r"'state' has shape \(10,\)"):
        VLAFeaturesExtractor(bad, cfg)


def test_sb3_actor_critic_with_folded_head_reproduces_policy_actions():
    """The PPO seam: SB3 policy around VLAFeaturesExtractor, weights copied from VLAPolicy."""
    from gymnasium import spaces as gym_spaces
    from stable_baselines3.common.policies import ActorCriticPolicy

    policy = make_policy()
    cfg = policy.config
    space = build_observation_space(cfg)
    sb3 = ActorCriticPolicy(space, gym_spaces.Box(-1, 1, (4,), np.float32), lr_schedule=lambda _: 1e-4, net_arch=[],
                            features_extractor_class=VLAFeaturesExtractor,
                            features_extractor_kwargs=dict(config=cfg))
    sb3.features_extractor.load_state_dict(policy.extractor.state_dict())
    w, b, log_std = policy.action_head.folded_linear()
    with torch.no_grad():
        sb3.action_net.weight.copy_(w)
        sb3.action_net.bias.copy_(b)
        sb3.log_std.copy_(log_std)
        sb3.value_net.load_state_dict(policy.value_head.state_dict())
    obs = raw_obs(np.random.default_rng(6), batch=3)
    wrapped = {k: v for k, v in obs.items() if k != "instruction"}
    wrapped.update(policy.text_encoder.features(obs["instruction"], cfg.max_tokens))
    sb3_actions, _ = sb3.predict(wrapped, deterministic=True)
    np.testing.assert_allclose(sb3_actions, policy.act(wrapped), atol=1e-5)


def test_action_chunk_policy_acts_with_the_first_action_of_its_newest_chunk():
    policy = make_policy(action_chunk=3)
    obs = raw_obs(np.random.default_rng(7))
    batch, _ = policy.prepare_obs(obs)
    with torch.no_grad():
        chunk = policy.action_head.chunk_actions(policy.extractor(batch))[0]
    np.testing.assert_allclose(policy.act(obs), chunk[0].clamp(-1, 1).numpy(), atol=1e-6)


def test_action_chunk_loss_masks_steps_past_the_episode_end():
    policy = make_policy(action_chunk=2)
    batch, _ = policy.prepare_obs(raw_obs(np.random.default_rng(8), batch=2))
    actions = torch.zeros(2, 2, 4)
    base = policy.bc_loss(batch, actions, action_mask=torch.tensor([[1, 0], [1, 0]]))
    wild = actions.clone()
    wild[:, 1] = 100.0  # masked: must not change the loss
    assert torch.equal(base, policy.bc_loss(batch, wild,
                                            action_mask=torch.tensor([[1, 0], [1, 0]])))
    first_only = policy.bc_loss(batch, actions[:, 0])
    torch.testing.assert_close(base, first_only)
    with pytest.raises(ValueError, match="chunk"):
        policy.bc_loss(batch, torch.zeros(2, 3, 4))
