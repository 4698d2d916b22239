"""The controller head ("learning by cheating"): the action head also reads an MLP of the
goal-state estimate and the proprioception; BC feeds it the true goal state on a share of rows."""

import numpy as np
import pytest
import torch

from vla_sim.agents.policies import load_policy
from vla_sim.agents.policies.config import VLAPolicyConfig
from vla_sim.agents.policies.vla import VLAPolicy
from vla_sim.agents.training.bc import train_bc
from vla_sim.agents.training.configs import BCConfig
from vla_sim.agents.training.rl_common import load_warm_start

from test_bc import POLICY, config, encoder_features, synthetic_demos, with_goal_states

CONTROLLED = {**POLICY, "controller_hidden": [16]}


def _policy(**overrides) -> VLAPolicy:
    torch.manual_seed(0)
    return VLAPolicy(VLAPolicyConfig(**{**CONTROLLED, "aux_dim": 6, "cameras": ["front"],
                                        **overrides}))


def _obs(policy: VLAPolicy, batch: int = 3) -> dict[str, torch.Tensor]:
    cfg = policy.config
    return {"image": torch.randint(0, 255, (batch, 16, 16, 3), dtype=torch.uint8),
            "state": torch.randn(batch, cfg.state_dim),
            "instruction_embedding": torch.randn(batch, cfg.text_dim),
            "instruction_tokens": torch.randn(batch, cfg.max_tokens, cfg.text_dim),
            "instruction_mask": torch.ones(batch, cfg.max_tokens)}


def test_the_action_depends_on_the_goal_the_controller_reads():
    policy = _policy()
    with torch.no_grad():
        for p in policy.action_head.mean.parameters():
            p.normal_()  # BC's near-zero init would hide the controller's contribution
    obs = _obs(policy)
    features = policy.extractor(obs)
    a = policy.action_head(policy.actor_features(obs, features, torch.zeros(3, 6)))
    b = policy.action_head(policy.actor_features(obs, features, torch.ones(3, 6)))
    assert policy.action_head.mean.in_features == 32 + 16
    assert not torch.allclose(a, b)
    # by default it reads the auxiliary head's estimate
    estimate = policy.aux_head.linear(features)
    default = policy.action_head(policy.actor_features(obs, features))
    torch.testing.assert_close(default, policy.action_head(
        policy.actor_features(obs, features, estimate)))


def test_controller_goal_is_the_truth_at_teacher_one_and_the_estimate_at_zero():
    policy = _policy()
    features = policy.extractor(_obs(policy))
    truth = torch.rand(3, 6)
    torch.testing.assert_close(policy.controller_goal(features, truth, 1.0, 0.0),
                               policy.aux_head.normalize(truth))
    torch.testing.assert_close(policy.controller_goal(features, truth, 0.0, 0.0),
                               policy.aux_head.linear(features).detach())
    noisy = policy.controller_goal(features, truth, 1.0, 0.05)
    assert not torch.allclose(noisy, policy.aux_head.normalize(truth))


def test_a_controller_needs_the_goal_state_estimate():
    with pytest.raises(ValueError, match="aux_dim"):
        VLAPolicy(VLAPolicyConfig(**CONTROLLED))


@pytest.mark.parametrize("bad, match", [
    ({"controller_hidden": [0]}, "positive"),
    ({"controller_hidden": [8], "head": "discrete"}, "gaussian"),
    ({"controller_hidden": [8], "action_chunk": 2}, "action_chunk"),
])
def test_bad_controller_settings_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        VLAPolicyConfig(**{**POLICY, **bad})


@pytest.mark.parametrize("key", ["controller_teacher", "controller_noise"])
def test_bad_teacher_settings_are_named(key):
    with pytest.raises(ValueError, match=key):
        BCConfig(**{key: -0.5})


def test_bc_trains_a_controller_that_acts_after_reload(tmp_path):
    data = with_goal_states(synthetic_demos())
    from vla_sim.language.encoder import HashingTextEncoder

    encoder = HashingTextEncoder()
    result = train_bc(data, tmp_path / "run",
                      config(steps=60, val_every_grad_steps=30, aux_weight=1.0,
                             policy=CONTROLLED, controller_teacher=0.5), encoder=encoder)
    assert np.mean(result.train_losses[-5:]) < np.mean(result.train_losses[:5])
    policy = load_policy(tmp_path / "run" / "last")
    assert policy.controller is not None and policy.config.controller_hidden == [16]
    policy.text_encoder = encoder
    idx = torch.from_numpy(data.instruction_index[:4])
    obs = {"image": torch.from_numpy(data.images["image"][:4]),
           "state": torch.from_numpy(data.states[:4]),
           **{k: v[idx] for k, v in encoder_features(encoder, data, policy).items()}}
    actions = policy.act(obs)
    assert actions.shape == (4, 4) and np.isfinite(actions).all()
    with pytest.raises(ValueError, match="controller"):
        load_warm_start(tmp_path / "run" / "last")
