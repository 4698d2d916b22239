"""Flow-matching action head: learns a multimodal action distribution, acts with its mode or
seeded samples, saves and loads, and refuses what needs a likelihood."""

import numpy as np
import pytest
import torch
from tiny_policy import SMALL

from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, load_policy, save_policy
from vla_sim.agents.policies.vla import FlowHead
from vla_sim.language.encoder import HashingTextEncoder


def make_policy(**overrides) -> VLAPolicy:
    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**{**SMALL, "head": "flow", **overrides}))
    policy.text_encoder = HashingTextEncoder()
    policy.set_normalization(np.zeros(22), np.ones(22), [0.1, 0.0, 0.0, 0.5], [0.3] * 4)
    return policy


def raw_obs(seed: int, batch: int | None = None) -> dict:
    rng = np.random.default_rng(seed)
    shape = (16, 16, 3) if batch is None else (batch, 16, 16, 3)
    return {"image": rng.integers(0, 256, shape, dtype=np.uint8),
            "state": rng.standard_normal(22 if batch is None else (batch, 22)).astype(np.float32),
            "instruction": "push the red cube" if batch is None else ["push the red cube"] * batch}


def test_flow_head_learns_two_modes_where_regression_learns_their_average():
    """One input, the expert goes left or right with equal odds: the flow's samples land near
    -0.8 or +0.8, hardly ever near the 0 a mean-squared regression would predict."""
    torch.manual_seed(0)
    config = VLAPolicyConfig(**{**SMALL, "head": "flow", "action_dim": 1, "flow_samples": 8})
    head = FlowHead(8, config)
    features = torch.ones(256, 8)
    actions = torch.where(torch.arange(256) % 2 == 0, 0.8, -0.8)[:, None]
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(600):
        optimizer.zero_grad()
        loss = head.loss(features, actions)
        loss.backward()
        optimizer.step()
    samples = head.distribution(features[:400].repeat(2, 1)[:400]).sample(
        torch.Generator().manual_seed(1)).squeeze(-1)
    near_mode = (samples.sub(0.8).abs() < 0.25) | (samples.add(0.8).abs() < 0.25)
    assert near_mode.float().mean() > 0.85
    assert 0.3 < (samples > 0).float().mean() < 0.7  # both modes, not one
    assert (samples.abs() < 0.3).float().mean() < 0.1  # not their average


def test_flow_mode_is_deterministic_and_seeded_samples_repeat():
    policy = make_policy()
    obs = raw_obs(0)
    assert np.array_equal(policy.act(obs), policy.act(obs))
    policy.reset(seed=7)
    first = [policy.act(obs, deterministic=False) for _ in range(3)]
    policy.reset(seed=7)
    second = [policy.act(obs, deterministic=False) for _ in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], first[1])  # fresh noise each step
    assert first[0].shape == (4,) and np.all(np.abs(first[0]) <= 1.0)


def test_flow_bc_loss_trains_every_head_parameter():
    policy = make_policy()
    batch, _ = policy.prepare_obs(raw_obs(1, batch=5))
    loss = policy.bc_loss(batch, torch.zeros(5, 4))
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in policy.action_head.parameters())


def test_flow_policy_round_trips_through_a_checkpoint(tmp_path):
    policy = make_policy(flow_steps=4, flow_hidden=[32, 16])
    save_policy(policy, tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    loaded.text_encoder = HashingTextEncoder()
    assert loaded.config.head == "flow" and loaded.config.flow_steps == 4
    assert torch.equal(loaded.action_head.action_std, torch.full((4,), 0.3))
    obs = raw_obs(2)
    assert np.array_equal(policy.act(obs), loaded.act(obs))


def test_flow_head_has_no_likelihood_for_policy_gradients():
    policy = make_policy()
    batch, _ = policy.prepare_obs(raw_obs(3, batch=2))
    with pytest.raises(NotImplementedError, match="head='gaussian'"):
        policy.evaluate_actions(batch, torch.zeros(2, 4))


@pytest.mark.parametrize("bad", [{"flow_steps": 0}, {"flow_samples": 0}, {"flow_hidden": []},
                                 {"action_chunk": 2, "action_steps": 3}, {"action_steps": 0}])
def test_flow_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        VLAPolicyConfig(**{**SMALL, "head": "flow", **bad})


def test_flow_chunk_loss_ignores_steps_past_the_episode_end():
    policy = make_policy(action_chunk=3)
    features = torch.randn(4, policy.extractor.features_dim)
    actions = torch.randn(4, 3, 4)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.bool)
    changed = actions.clone()
    changed[~mask] = 50.0  # padding past the end must not matter
    torch.manual_seed(0)
    a = policy.action_head.loss(features, actions, mask)
    torch.manual_seed(0)
    b = policy.action_head.loss(features, changed, mask)
    torch.manual_seed(0)
    c = policy.action_head.loss(features, changed)
    assert torch.allclose(a, b) and not torch.allclose(a, c)


@pytest.mark.parametrize("head", ["flow", "gaussian"])
def test_receding_horizon_executes_its_plan_then_plans_again(head, monkeypatch):
    policy = make_policy(head=head, action_chunk=4, action_steps=3)
    calls = []
    real = policy.action_head.plan
    monkeypatch.setattr(policy.action_head, "plan",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    obs = raw_obs(4)
    with torch.no_grad():
        expected = real(policy.extractor(policy.prepare_obs(obs)[0]))[0, :3].numpy()
    actions = [policy.act(obs) for _ in range(6)]
    assert len(calls) == 2  # steps 0 and 3
    np.testing.assert_allclose(np.stack(actions[:3]), np.clip(expected, -1, 1), atol=1e-6)
    policy.reset(seed=0)  # a new episode drops what is left of the plan
    policy.act(obs)
    assert len(calls) == 3
    assert policy.act(raw_obs(5, batch=2)).shape == (2, 4)  # batches plan every step


def test_evaluation_can_change_how_many_planned_actions_run(monkeypatch):
    from vla_sim.evaluation.evaluator import EvalConfig, _build_policy
    from vla_sim.evaluation.policies import RandomPolicy

    policy = make_policy(action_chunk=4)
    config = EvalConfig(env_ids=["vla_sim/Push-v0"], action_steps=4)
    assert _build_policy(lambda env: policy, None, config) is policy
    assert policy.config.action_steps == 4
    with pytest.raises(ValueError, match="1..action_chunk"):
        policy.set_action_steps(5)

    class Env:
        action_space = __import__("gymnasium").spaces.Box(-1, 1, (4,))

    with pytest.raises(ValueError, match="plans action chunks"):
        _build_policy(lambda env: RandomPolicy(env.action_space), Env(), config)
    with pytest.raises(ValueError, match="action_steps"):
        EvalConfig(env_ids=["vla_sim/Push-v0"], action_steps=0)
