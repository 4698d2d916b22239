"""DAgger rollouts on a two-node Ray cluster: one pool for the whole run, the learner reloaded
(and shipped to the workers) every round, the aggregated dataset identical to one process's."""

from __future__ import annotations

import json

import numpy as np
from tiny_policy import SMALL

import vla_sim  # noqa: F401  (registers the env ids)
from vla_sim.agents.training.configs import DAggerConfig
from vla_sim.agents.training.dagger import train_dagger
from vla_sim.config import load_config
from vla_sim.data import open_dataset
from vla_sim.data.collect import CollectConfig, collect


def _config(**overrides) -> DAggerConfig:
    policy = json.dumps({**SMALL, "text_encoder": "hashing"})
    base = {"rounds": 2, "episodes_per_round": 2, "round_steps": 3, "beta0": 0.5,
            "bc.steps": 4, "bc.batch_size": 8, "bc.warmup_steps": 1, "bc.val_every_grad_steps": 2,
            "bc.checkpoint_every_grad_steps": 100, "bc.log_every_grad_steps": 2,
            "bc.device": "cpu", "bc.tensorboard": "false", "bc.num_threads": 1,
            "bc.progress": "false", **overrides}
    return load_config(DAggerConfig, overrides=[f"{k}={v}" for k, v in base.items()]
                       + [f"bc.policy={policy}"])


def _rollouts(run):
    ds = open_dataset(run / "data")
    rows = [ds.episode_record(i) for i in range(ds.num_episodes)]
    keys = [(r["seed"], r["first_frame_sha256"], r["success"], r["length"],
             r["metadata"].get("dagger_round"), r["metadata"].get("executed_actions"))
            for r in rows if r["metadata"].get("relabelled")]
    return keys, ds.low_dim_arrays()["action"]


def test_ray_dagger_rollouts_equal_one_process(ray_cluster, tmp_path):
    demos = tmp_path / "demos"
    collect(CollectConfig(out=str(demos), env="Reach", episodes=3, image_size=16, progress=False))
    here = train_dagger(demos, tmp_path / "one", _config(workers=1))
    there = train_dagger(demos, tmp_path / "ray", _config(workers=2, backend="ray",
                                                          ray_address=ray_cluster.address))
    assert here.rounds_completed == there.rounds_completed == 2
    a, b = _rollouts(tmp_path / "one"), _rollouts(tmp_path / "ray")
    assert [k[4] for k in a[0]] == [0, 0, 1, 1]
    assert a[0] == b[0]  # seeds, scenes, outcomes and every executed action, both rounds
    np.testing.assert_array_equal(a[1], b[1])
