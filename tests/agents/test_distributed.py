"""Data-parallel training: two gloo processes follow one process with the same global batch.

The BC run uses every loss term whose mean couples the samples (action-chunk padding,
grounding-label visibility that differs between the two halves of the batch), so the processes
must compute the global loss, not an average of per-process means; VL pre-training's InfoNCE
contrasts every frame with every text of the global batch; the action autoencoder's plain
mean needs neither.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from vla_sim.agents.policies import load_policy
from vla_sim.agents.policies.checkpoint import read_weights
from vla_sim.agents.policies.config import ActionAEConfig
from vla_sim.agents.training.bc import train_bc
from vla_sim.agents.training.configs import BCConfig, VLPretrainConfig
from vla_sim.agents.training.distributed import Distributed, RankFailed
from vla_sim.agents.training.loop import NonFiniteError, SupervisedLoop
from vla_sim.agents.training.pretrain_action import train_action_ae
from vla_sim.agents.training.pretrain_vl import make_pairs, pretrain_vl
from vla_sim.config import load_config
from vla_sim.data.demos import DemoArrays
from vla_sim.envs.goal_state import GOAL_STATE_DIM
from vla_sim.envs.goal_state import GOAL_STATE_LAYOUT as L
from vla_sim.language.encoder import HashingTextEncoder

STEPS = 20
# Parameters whose gradient is exactly zero (a bias or position term added to every attention
# key shifts all logits alike; in_proj_bias holds such a key bias): AdamW moves them by float
# noise, differently for any two batchings, and they change nothing the policy computes, so
# the test compares the policies' actions instead.
NULL_GRADIENT = ("key.bias", "position.", "in_proj_bias")
# Two channels per GroupNorm group: with one, a conv bias has an exactly-zero gradient and
# AdamW turns float noise into full-size steps that differ between any two batchings.
POLICY = {"image_size": 16, "channels": [16, 16], "image_features": 32, "attn_dim": 16,
          "attn_heads": 2, "lang_features": 16, "state_hidden": 16, "trunk_hidden": [32],
          "max_tokens": 8, "spatial_lang": True, "action_chunk": 3}
INSTRUCTIONS = ["put the red cube in the blue tray", "put the green cube in the yellow tray"]


def demos(episodes: int = 8, steps: int = 10, seed: int = 0) -> DemoArrays:
    """Textured frames; goal states with image-plane labels whose visibility varies per step."""
    rng = np.random.default_rng(seed)
    n = episodes * steps
    goal = np.zeros((n, GOAL_STATE_DIM), np.float32)
    goal[:, L["front_object_uv"]] = rng.uniform(-1, 1, (n, 2))
    goal[:, L["front_destination_uv"]] = rng.uniform(-1, 1, (n, 2))
    goal[:, L["front_visible"]] = rng.random((n, 2)) < 0.6
    goal[:, L["holding"]] = (np.arange(n) % steps >= steps // 2)[:, None]
    data = DemoArrays.from_steps(
        {"image": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)},
        rng.standard_normal((n, 22)), rng.uniform(-1, 1, (n, 4)),
        [INSTRUCTIONS[e % 2] for e in range(episodes) for _ in range(steps)],
        np.repeat(np.arange(episodes), steps))
    data.env_states = goal
    return data


def bc_config() -> BCConfig:
    base = {"steps": STEPS, "batch_size": 16, "lr": 3e-3, "warmup_steps": 2,
            "val_every_grad_steps": 10, "checkpoint_every_grad_steps": 10,
            "log_every_grad_steps": 5, "device": "cpu", "tensorboard": False, "num_threads": 1,
            "progress": False, "aux_weight": 1.0, "ground_weight": 1.0, "scene_batch": 8,
            "policy": POLICY}
    return load_config(BCConfig, overrides=[
        f"{k}={json.dumps(v) if isinstance(v, (dict, list, bool)) else v}"
        for k, v in base.items()])


def vl_config() -> VLPretrainConfig:
    small = {k: v for k, v in POLICY.items() if k not in ("spatial_lang", "action_chunk")}
    return load_config(VLPretrainConfig, overrides=[
        f"steps={STEPS}", "batch_size=16", "device=cpu", "num_threads=1", "val_fraction=0.25",
        f"policy={json.dumps(small)}"])


AE = ActionAEConfig(chunk=3, steps=STEPS, batch_size=16)


def run_all(out: Path) -> dict:
    """Every trainer on the same data; what a process returns (losses, VL weights, AE)."""
    data = demos()
    # with scene frames: their batch splits across the processes like the demonstrations'
    bc = train_bc(data, out / "bc", bc_config(), encoder=HashingTextEncoder(),
                  scene_frames=demos(episodes=3, seed=1))
    plain = train_bc(data, out / "plain", bc_config(), encoder=HashingTextEncoder())
    vl = pretrain_vl(make_pairs(data, "image"), vl_config(), encoder=HashingTextEncoder())
    ae = train_action_ae(data.actions, data.episode_index, AE)
    return {"bc": bc.train_losses, "plain": plain.train_losses, "vl": vl.losses, "ae": ae.losses,
            "vl_weights": {k: v.tolist() for k, v in vl.model.state_dict().items()},
            "ae_weights": {k: v.tolist() for k, v in ae.model.state_dict().items()}}


def _worker(rank: int, world: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                             world_size=world)
    try:
        result = run_all(Path(out))
        # A step only rank 0 runs fails there (the run folder is taken): every process raises.
        try:
            train_bc(demos(), Path(out) / "bc", bc_config(), encoder=HashingTextEncoder())
            result["second_run"] = "no error"
        except RankFailed as exc:
            result["second_run"] = f"RankFailed: {exc}"
        except ValueError as exc:
            result["second_run"] = f"ValueError: {exc}"
        # A NaN in one process's rows stops every process at the same step.
        result["nan"] = _nan_in_one_process(Distributed(rank, world))
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        tdist.destroy_process_group()


def _nan_in_one_process(dist: Distributed) -> str:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    data = torch.randn(8, 3)
    data[5, 2] = float("nan")  # a row of the second process's half of every batch

    def sample(rng: np.random.Generator) -> torch.Tensor:
        return data[dist.rows(8)]

    loop = SupervisedLoop(list(model.parameters()), torch.optim.SGD(model.parameters(), lr=0.1),
                          sample, lambda b: ((model(b[:, :2]) - b[:, 2:]) ** 2).mean(), seed=0,
                          dist=dist)
    try:
        loop.run(0, 3)
    except NonFiniteError as exc:
        return str(exc)
    return "no error"


def test_the_global_batch_splits_into_equal_rows_per_process():
    assert Distributed(1, 4).rows(16) == slice(4, 8)
    assert Distributed().rows(7) == slice(0, 7)
    with pytest.raises(ValueError, match="batch_size 16 must divide by the 3 training processes"):
        Distributed(0, 3).rows(16)


def test_two_gloo_processes_match_one_process_over_20_steps(tmp_path):
    one = run_all(tmp_path / "one")
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path / "two")), nprocs=2)
    ranks = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for trainer in ("bc", "plain", "vl", "ae"):
        assert len(one[trainer]) == STEPS
        for two in ranks:  # every process reports the global loss
            np.testing.assert_allclose(two[trainer], one[trainer], rtol=1e-4, err_msg=trainer)
    # Only rank 0 wrote the run; its weights are the one-process weights, and it acts alike.
    a = read_weights(tmp_path / "one" / "bc" / "last" / "model.safetensors")
    b = read_weights(tmp_path / "two" / "bc" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        if not any(part in key for part in NULL_GRADIENT):
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-4, msg=key)
    policies = [load_policy(tmp_path / run / "bc" / "last") for run in ("one", "two")]
    data = demos()
    obs = {"image": data.images["image"][:32], "state": data.states[:32],
           "instruction": [data.instructions[i] for i in data.instruction_index[:32]]}
    for policy in policies:
        policy.text_encoder = HashingTextEncoder()
    np.testing.assert_allclose(policies[1].act(obs), policies[0].act(obs), atol=1e-4)
    for name in ("vl_weights", "ae_weights"):
        for two in ranks:
            for key, value in one[name].items():
                np.testing.assert_allclose(two[name][key], value, rtol=1e-4, atol=1e-4,
                                           err_msg=f"{name} {key}")
    assert sorted((tmp_path / "two" / "bc" / "checkpoints").iterdir()) == [
        tmp_path / "two" / "bc" / "checkpoints" / f"step_0000{s}" for s in (10, 20)]
    assert ranks[0]["second_run"].startswith("ValueError") and "already holds" in \
        ranks[0]["second_run"]
    assert ranks[1]["second_run"].startswith("RankFailed: rank 0 failed: ValueError")
    for two in ranks:
        assert two["nan"].startswith("loss is nan at step 1"), two["nan"]
