"""Collection on a two-node Ray cluster gives the process pool's dataset, episode for episode."""

from __future__ import annotations

import numpy as np

from vla_sim.data import open_dataset
from vla_sim.data.collect import CollectConfig, collect


def _episodes(root) -> tuple[list[tuple], np.ndarray, np.ndarray]:
    ds = open_dataset(root)
    records = [ds.episode_record(i) for i in range(ds.num_episodes)]
    keys = [(r["attempt_index"], r["seed"], r["first_frame_sha256"], r["success"], r["length"],
             r["instruction"]) for r in records]
    arrays = ds.low_dim_arrays()
    return keys, arrays["observation.state"], arrays["action"]


def test_ray_collection_equals_the_process_pool_and_one_worker(ray_cluster, tmp_path):
    base = {"env": "Reach", "episodes": 3, "image_size": 16, "noise": 0.3, "keep_failures": True,
            "max_attempts": 4, "progress": False}
    runs = {"one": {"workers": 1}, "process": {"workers": 2},
            "ray": {"workers": 2, "backend": "ray", "ray_address": ray_cluster.address}}
    got = {}
    for name, kw in runs.items():
        result = collect(CollectConfig(out=str(tmp_path / name), **base, **kw))
        assert result.attempts == result.episodes  # failures kept: one episode per attempt
        got[name] = _episodes(tmp_path / name)
    keys, states, actions = got["one"]
    assert [k[0] for k in keys] == list(range(len(keys))) and len({k[1] for k in keys}) == len(keys)
    for name in ("process", "ray"):
        assert got[name][0] == keys, name  # seeds, first-frame hashes, outcomes, lengths
        np.testing.assert_array_equal(got[name][1], states)
        np.testing.assert_array_equal(got[name][2], actions)
