"""Reservoir replay (uniform over the stream) and fine-tuning with replay."""

import numpy as np
import pytest
import torch
from tiny_policy import SMALL

from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig
from vla_sim.agents.training.bc import BCConfig
from vla_sim.agents.training.continual import (
    ContinualConfig,
    ReservoirReplayBuffer,
    concat_demos,
    finetune_with_replay,
    forgetting_report,
    renormalize_policy,
)
from vla_sim.data.demos import DemoArrays
from vla_sim.language.encoder import HashingTextEncoder


def test_reservoir_keeps_each_seen_item_with_probability_k_over_n():
    n, k, trials = 40, 10, 4000
    counts = np.zeros(n)
    for t in range(trials):
        buf = ReservoirReplayBuffer(k, seed=t)
        buf.extend(range(n))
        assert len(buf) == k and buf.seen == n and len(set(buf.items)) == k
        counts[buf.items] += 1
    expected = trials * k / n  # 1000 per item
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # chi-square with 39 dof: the 99.9% quantile is 72.1. (The counts are not independent
    # multinomial draws - the total is fixed at trials*k - which only makes this conservative.)
    assert chi2 < 72.1, (chi2, counts.min(), counts.max())
    assert abs(counts[:k].mean() - expected) < 0.05 * expected  # early items not favoured
    assert abs(counts[-k:].mean() - expected) < 0.05 * expected  # late items not favoured


def test_reservoir_below_capacity_keeps_everything_and_samples_uniformly():
    buf = ReservoirReplayBuffer(100, seed=0)
    buf.extend(range(5))
    assert buf.items == [0, 1, 2, 3, 4]
    draws = np.bincount(buf.sample(5000, np.random.default_rng(0)), minlength=5)
    assert draws.min() > 900
    with pytest.raises(ValueError):
        ReservoirReplayBuffer(0)


def _demos(instruction, action, n_eps=4, steps=8, seed=0):
    rng = np.random.default_rng(seed)
    n = n_eps * steps
    return DemoArrays.from_steps({"image": rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)},
                                 rng.normal(size=(n, 22)), np.tile(action, (n, 1)),
                                 [instruction] * n, np.repeat(np.arange(n_eps), steps))


def test_finetune_with_replay_mixes_batches_and_keeps_normalisation():
    old = _demos("reach the red cube", [0.5, 0, 0, 1])
    new = _demos("push the blue cube", [-0.5, 0, 0, -1], seed=1)
    merged, (new_ids, old_ids) = concat_demos([new, old])
    assert len(merged.instructions) == 2 and len(np.unique(merged.episode_index)) == 8
    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**SMALL))
    policy.set_normalization(np.zeros(22), np.ones(22), [0.0] * 4, [1.0] * 4)
    before = policy.normalization()
    cfg = ContinualConfig(renormalize=False, replay_size=16, replay_ratio=0.5, lr_scale=0.5, steps=3,
                          bc=BCConfig(batch_size=8, device="cpu", tensorboard=False, progress=False,
                                      policy=VLAPolicyConfig(**SMALL)))
    res = finetune_with_replay(policy, new, [old], cfg, encoder=HashingTextEncoder())
    assert res.replay_per_batch == 4 and len(res.buffer) == 16 and res.buffer.seen == len(old.states)
    assert set(res.buffer.items) <= set(range(len(new.states), len(new.states) + len(old.states)))
    assert len(res.train_losses) == 3 and policy.normalization() == before


def test_forgetting_report():
    rep = forgetting_report({"reach": 0.9, "push": 0.1}, {"reach": 0.6, "push": 0.7}, new_task="push")
    assert rep["reach"]["forgetting"] == pytest.approx(0.3)
    assert rep["push"]["gain"] == pytest.approx(0.6)


def test_renormalize_keeps_the_policys_actions_exactly():
    from vla_sim.agents.policies.multihead import MultiHeadVLAPolicy

    rng = np.random.default_rng(0)
    obs = {"image": torch.from_numpy(rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)),
           "state": torch.from_numpy(rng.normal(size=(6, 22)).astype(np.float32))}
    feats = HashingTextEncoder().features(["reach the red cube"] * 6, 8)
    obs.update({k: torch.from_numpy(v) for k, v in feats.items()})
    for policy in (VLAPolicy(VLAPolicyConfig(**SMALL)),
                   MultiHeadVLAPolicy(VLAPolicyConfig(**SMALL), ["a", "b"])):
        # gripper std floored (a constant dimension in the old task)
        policy.set_normalization(rng.normal(size=22), rng.uniform(0.5, 2, 22), [0.1, 0, 0, 1.0],
                                 [0.3, 0.2, 0.2, 1e-6])
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        policy.eval()
        dist = policy.distribution(obs)
        mean, std = dist.mode().clone(), dist.dist.stddev.clone()
        renormalize_policy(policy, rng.normal(size=22), rng.uniform(0.5, 2, 22), [0, 0, 0, 0],
                           [0.5, 0.5, 0.5, 0.9])
        dist = policy.distribution(obs)
        assert torch.allclose(dist.mode(), mean, atol=1e-4, rtol=1e-4)
        assert torch.allclose(dist.dist.stddev, std, atol=1e-5, rtol=1e-4)
        assert policy.normalization()["action_std"][3] == pytest.approx(0.9)


def test_renormalize_refuses_a_flow_head_it_cannot_rewrite_exactly():
    policy = VLAPolicy(VLAPolicyConfig(**{**SMALL, "head": "flow"}))
    with pytest.raises(ValueError, match="flow head"):
        renormalize_policy(policy, np.zeros(22), np.ones(22), [0, 0, 0, 0], [1, 1, 1, 1])
