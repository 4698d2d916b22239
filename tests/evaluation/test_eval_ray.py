"""Evaluation on a two-node Ray cluster gives the process pool's episodes: the same seeds,
first-frame hashes and outcomes; videos come back to this machine; a checkpoint reaches the
workers through the object store."""

from __future__ import annotations

import vla_sim  # noqa: F401  (registers the env ids)
from vla_sim.evaluation.evaluator import EvalConfig, evaluate
from vla_sim.evaluation.policies import PolicySpec


def _config(**kw) -> EvalConfig:
    base = {"env_ids": ["vla_sim/Reach-v0"], "episodes": 3, "splits": ["train", "heldout"],
            "randomization": ["low"], "image_size": 16, "render_size": 32,
            "max_episode_steps": 25}
    base.update(kw)
    return EvalConfig(**base)


def _key(r):
    return (r.cell, r.index, r.seed, r.first_frame_hash, r.randomization_hash, r.success,
            r.length, r.instruction, r.video)


def test_ray_evaluation_equals_the_process_pool_and_one_worker(ray_cluster, tmp_path):
    ray = {"backend": "ray", "ray_address": ray_cluster.address}
    results = {}
    for name, kw in {"one": {"workers": 1}, "process": {"workers": 2},
                     "ray": dict(workers=2, **ray)}.items():
        cfg = _config(video_dir=str(tmp_path / name), record="first", videos=1, **kw)
        results[name] = evaluate(PolicySpec("expert"), cfg)
    one = [_key(r) for r in results["one"].episodes]
    assert [_key(r) for r in results["process"].episodes] == one
    assert [_key(r) for r in results["ray"].episodes] == one
    assert len({k[3] for k in one}) == 6  # six distinct scenes
    videos = [r.video for r in results["ray"].episodes if r.video]
    assert len(videos) == 2 and all((tmp_path / "ray" / v).stat().st_size > 0 for v in videos)
    assert results["ray"].timing["backend"] == "ray"
    assert "backend" not in results["ray"].to_dict()["config"]  # a report names no cluster


def test_ray_evaluates_a_checkpoint_like_this_process(ray_cluster, tmp_path):
    from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, save_policy

    ckpt = save_policy(VLAPolicy(VLAPolicyConfig(image_size=16, text_encoder="hashing")),
                       tmp_path / "policy")
    cfg = {"episodes": 2, "splits": ["train"], "max_episode_steps": 8}
    here = evaluate(PolicySpec("checkpoint", str(ckpt)), _config(**cfg))
    there = evaluate(PolicySpec("checkpoint", str(ckpt)),
                     _config(workers=2, backend="ray", ray_address=ray_cluster.address, **cfg))
    assert [_key(r) for r in there.episodes] == [_key(r) for r in here.episodes]
