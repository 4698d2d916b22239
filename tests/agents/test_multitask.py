"""Per-task heads route each sample to its task's head; task weights scale the loss."""

import numpy as np
import pytest
import torch
from tiny_policy import SMALL

from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, load_policy
from vla_sim.agents.policies.multihead import MultiHeadVLAPolicy
from vla_sim.agents.training.bc import BCConfig
from vla_sim.agents.training.multitask import (
    MultiTaskConfig,
    MultiTaskData,
    per_sample_bc_loss,
    read_task_weights,
    task_weighted_loss,
    train_multitask,
)
from vla_sim.data.demos import DemoArrays
from vla_sim.language.encoder import HashingTextEncoder


def _obs(b, rng):
    enc = HashingTextEncoder()
    feats = enc.features(["reach the red cube"] * b, 8)
    obs = {"image": torch.from_numpy(rng.integers(0, 255, (b, 16, 16, 3), dtype=np.uint8)),
           "state": torch.randn(b, 22)}
    obs.update({k: torch.from_numpy(v) for k, v in feats.items()})
    return obs


def test_each_sample_goes_through_its_tasks_head():
    torch.manual_seed(0)
    policy = MultiHeadVLAPolicy(VLAPolicyConfig(**SMALL), ["reach", "push", "stack"]).eval()
    with torch.no_grad():
        for t, head in enumerate(policy.task_heads):  # head t outputs the constant t (env units)
            head.mean.weight.zero_()
            head.mean.bias.fill_(float(t))
    obs = _obs(5, np.random.default_rng(0))
    tid = torch.tensor([2, 0, 1, 2, 0])
    mean, _ = policy({**obs, "task_id": tid})
    assert mean[:, 0].tolist() == [2.0, 0.0, 1.0, 2.0, 0.0]
    # Without a task id the classifier routes; set_task forces one head.
    policy.set_task("push")
    assert policy(obs)[0][:, 0].tolist() == [1.0] * 5
    # Gradients reach only the heads of the tasks present in the batch.
    policy.train()
    policy.zero_grad()
    per = per_sample_bc_loss(policy, {**obs, "task_id": torch.tensor([0, 0, 2, 2, 2])},
                             torch.ones(5, 4))
    per.mean().backward()
    assert policy.task_heads[1].mean.weight.grad is None or \
        float(policy.task_heads[1].mean.weight.grad.abs().sum()) == 0.0
    assert float(policy.task_heads[0].mean.bias.grad.abs().sum()) > 0


def test_task_weights_scale_each_tasks_loss():
    per = torch.tensor([1.0, 2.0, 3.0, 4.0])
    tid = torch.tensor([0, 1, 0, 1])
    assert float(task_weighted_loss(per, tid, torch.tensor([1.0, 1.0]))) == pytest.approx(2.5)
    assert float(task_weighted_loss(per, tid, torch.tensor([2.0, 0.0]))) == pytest.approx(2.0)
    cfg = MultiTaskConfig(task_weights={"push": 3.0})
    assert cfg.weight_vector(["reach", "push"]).tolist() == [1.0, 3.0]
    with pytest.raises(ValueError, match="stack"):
        MultiTaskConfig(task_weights={"stack": 1.0}).weight_vector(["reach"])
    assert read_task_weights("reach=1, push=2.5") == {"reach": 1.0, "push": 2.5}


def test_train_multitask_per_task_and_shared_and_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    n = 48
    instr = ["reach the red cube"] * 24 + ["push the blue cube"] * 24
    actions = np.concatenate([np.tile([0.5, 0, 0, 1], (24, 1)), np.tile([-0.5, 0, 0, -1], (24, 1))])
    demos = DemoArrays.from_steps({"image": rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)},
                                  rng.normal(size=(n, 22)), actions, instr, np.repeat(np.arange(8), 6))
    data = MultiTaskData(demos, ["push", "reach"], np.array([1] * 24 + [0] * 24))
    bc = BCConfig(steps=30, batch_size=16, lr=3e-3, warmup_steps=2, device="cpu", val_fraction=0.25,
                  tensorboard=False, progress=False, policy=VLAPolicyConfig(**SMALL))
    res = train_multitask(data, MultiTaskConfig(heads="per-task", bc=bc),
                          encoder=HashingTextEncoder(), out_dir=tmp_path / "mt")
    assert isinstance(res.policy, MultiHeadVLAPolicy) and res.classifier_accuracy == 1.0
    assert res.train_losses[-1] < res.train_losses[0]
    loaded = load_policy(tmp_path / "mt")
    assert isinstance(loaded, MultiHeadVLAPolicy) and loaded.tasks == ["push", "reach"]
    # the evaluator's checkpoint loader recognises per-task heads too
    from vla_sim.evaluation.policies import load_checkpoint_policy

    assert isinstance(load_checkpoint_policy(tmp_path / "mt"), MultiHeadVLAPolicy)
    shared = train_multitask(data, MultiTaskConfig(heads="shared", bc=bc), encoder=HashingTextEncoder())
    assert type(shared.policy) is VLAPolicy and set(shared.val_loss_per_task) <= {"push", "reach"}
