"""Write-then-read: exact low-dimensional data, images within codec tolerance, LeRobot layout."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from vla_sim.data import DatasetReader, LeRobotDatasetWriter, VLADataset
from vla_sim.data.demos import DemoArrays
from vla_sim.utils.video import read_video

# H.264 CRF 18, yuv420p: measured mean abs error 2.3/255 at 32x32 (max 2.7) and 1.7/255 at 64x64
# over 5 synthetic episodes like these (chroma subsampling dominates); the bound leaves room for
# other encoder builds and busier frames.
IMAGE_MAE_TOLERANCE = 6.0


@pytest.fixture
def written(tmp_path, episode_factory):
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    w = LeRobotDatasetWriter(root, fps=20, robot_type="panda", cameras=("front", "wrist"),
                             state_dim=22, action_dim=4, image_size=32)
    eps = [episode_factory(rng, t, cameras=("front", "wrist"), instruction=text, seed=i)
           for i, (t, text) in enumerate([(7, "reach the red target"), (5, "push the cube"),
                                          (6, "reach the red target")])]
    for ep in eps:
        w.add_episode(ep)
    return root, eps


def test_round_trip_is_exact_for_low_dim_and_close_for_images(written):
    root, eps = written
    ds = DatasetReader(root)
    assert ds.num_episodes == 3 and ds.num_frames == 18
    for i, ep in enumerate(eps):
        got = ds.episode_arrays(i)
        np.testing.assert_array_equal(got["states"], ep.states)
        np.testing.assert_array_equal(got["actions"], ep.actions)
        np.testing.assert_array_equal(got["rewards"], ep.rewards)
        np.testing.assert_array_equal(got["dones"], ep.dones)
        assert got["instruction"] == ep.instruction
        for cam in ("front", "wrist"):
            mae = np.abs(got["images"][cam].astype(float) - ep.images[cam]).mean()
            assert got["images"][cam].shape == ep.images[cam].shape
            assert mae < IMAGE_MAE_TOLERANCE, (cam, mae)
        rec = ds.episode_record(i)
        assert rec["seed"] == i and rec["randomization"] == {"goal": [0.1, 0.2, 0.3]}
        assert rec["success"] is True and rec["task"] == "reach"


def test_layout_follows_lerobot_v3(written):
    root, _ = written
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    for key in ("fps", "robot_type", "features", "total_episodes", "total_frames", "total_tasks",
                "chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "data_path",
                "video_path", "splits"):
        assert key in info
    assert info["splits"] == {"train": "0:3"} and info["total_tasks"] == 2
    assert info["features"]["observation.images.front"]["dtype"] == "video"
    assert info["vla_sim"] == {}  # no extra_info given to the writer
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert tasks.index.name == "task" and list(tasks["task_index"]) == [0, 1]
    eps = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["tasks"] for e in eps] == [["reach the red target"], ["push the cube"], ["reach the red target"]]
    assert eps[1]["dataset_from_index"] == 7 and eps[1]["videos/observation.images.front/to_timestamp"] == 0.25
    data = pq.read_table(root / "data/chunk-000/file-001.parquet")
    assert data.column("index").to_pylist() == list(range(7, 12))
    assert data.column("task_index").to_pylist() == [1] * 5
    wrist = read_video(root / "videos/observation.images.wrist/chunk-000/file-002.mp4")
    assert wrist.shape == (6, 32, 32, 3)  # the third episode's 6 wrist frames
    stats = json.loads((root / "meta/stats.json").read_text())
    assert stats["observation.state"]["count"] == [18]
    assert np.array(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)


def test_torch_dataset_items_history_and_chunks(written):
    root, eps = written
    ds = VLADataset(root, history=2, action_chunk=3)
    assert len(ds) == 18
    item = ds[7]  # first frame of episode 1
    assert item["image"].shape == (2, 32, 32, 3) and item["wrist_image"].shape == (2, 32, 32, 3)
    assert item["state"].shape == (2, 22) and item["action"].shape == (3, 4)
    np.testing.assert_array_equal(item["state"][0].numpy(), eps[1].states[0])  # padded by repetition
    assert item["instruction"] == "push the cube" and item["episode_index"] == 1
    last = ds[11]
    assert last["action_is_pad"].tolist() == [False, True, True]
    np.testing.assert_array_equal(last["action"][2].numpy(), eps[1].actions[-1])
    plain = VLADataset(root, split="train", val_fraction=0.3)
    assert plain.episode_indices == [0, 1] and plain[0]["action"].shape == (4,)
    arrays = plain.arrays()
    assert arrays["image"].shape == (18, 32, 32, 3) and arrays["state"].dtype == np.float32


def test_frame_cache_is_built_once_and_invalidated_on_append(written, episode_factory):
    root, _ = written
    VLADataset(root)
    npy = root / ".cache/frames_front.npy"
    stamp = npy.stat().st_mtime_ns
    VLADataset(root)
    assert npy.stat().st_mtime_ns == stamp  # reused, not decoded again
    w = LeRobotDatasetWriter(root, fps=20, robot_type="panda", cameras=("front", "wrist"), image_size=32)
    w.add_episode(episode_factory(np.random.default_rng(5), 4, cameras=("front", "wrist")))
    ds = VLADataset(root)
    assert len(ds) == 22 and ds.arrays()["image"].shape[0] == 22


def test_grown_arrays_equal_a_full_reload_after_episodes_are_appended(written, episode_factory):
    root, _ = written
    held = DemoArrays.from_dataset(VLADataset(root))
    w = LeRobotDatasetWriter(root, fps=20, robot_type="panda", cameras=("front", "wrist"),
                             image_size=32)
    rng = np.random.default_rng(5)
    for t, text in [(4, "stack the blue cube"), (3, "push the cube")]:
        w.add_episode(episode_factory(rng, t, cameras=("front", "wrist"), instruction=text))
    grown = DemoArrays.grown(held, DatasetReader(root))
    full = DemoArrays.from_dataset(VLADataset(root))
    assert len(grown.states) == 25 and grown.instructions == full.instructions
    for name in ("states", "actions", "instruction_index", "episode_index", "env_states"):
        a, b = getattr(grown, name), getattr(full, name)
        assert (a is None and b is None) or np.array_equal(a, b), name
    assert sorted(grown.images) == sorted(full.images) == ["image", "wrist_image"]
    for key in full.images:
        assert np.array_equal(grown.images[key], full.images[key]), key
    assert len(held.states) == 18 and len(held.images["image"]) == 18  # held is left as it was


def test_growing_arrays_refuses_a_dataset_that_was_not_only_appended(tmp_path, written,
                                                                      episode_factory):
    root, _ = written
    held = DemoArrays.from_dataset(VLADataset(root))
    other = tmp_path / "other"
    w = LeRobotDatasetWriter(other, fps=20, robot_type="panda", cameras=("front", "wrist"),
                             state_dim=22, action_dim=4, image_size=32)
    rng = np.random.default_rng(1)
    for t in (5, 5, 5, 5):
        w.add_episode(episode_factory(rng, t, cameras=("front", "wrist")))
    with pytest.raises(ValueError, match="cannot grow the held demonstrations: the dataset's "
                                         "first 3 episodes do not end at step 18"):
        DemoArrays.grown(held, DatasetReader(other))


def test_pickled_dataset_does_not_carry_frames(written):
    import pickle

    root, _ = written
    ds = VLADataset(root)
    ds[0]
    blob = pickle.dumps(ds)
    assert len(blob) < 200_000
    assert pickle.loads(blob)[3]["image"].shape == (32, 32, 3)


def test_meta_written_incrementally_equals_a_rebuild_and_forgets_a_failed_commit(
        tmp_path, episode_factory, monkeypatch):
    import vla_sim.data.writer as writer_mod

    rng = np.random.default_rng(1)
    root = tmp_path / "ds"
    w = LeRobotDatasetWriter(root, fps=20, robot_type="panda", cameras=("front",),
                             state_dim=22, action_dim=4, image_size=32)
    w.add_episode(episode_factory(rng, 5, seed=0))
    real = writer_mod.atomic_write_bytes

    def fail_on_episodes(path, data):
        if str(path).endswith("meta/episodes/chunk-000/file-000.parquet"):
            raise OSError("disk full")
        return real(path, data)

    monkeypatch.setattr(writer_mod, "atomic_write_bytes", fail_on_episodes)
    with pytest.raises(OSError, match="disk full"):
        w.add_episode(episode_factory(rng, 9, seed=1, instruction="push the cube"))
    monkeypatch.setattr(writer_mod, "atomic_write_bytes", real)
    for i, t in enumerate([4, 6, 3], start=2):
        w.add_episode(episode_factory(rng, t, seed=i))
    on_disk = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["length"] for r in on_disk] == [5, 4, 6, 3]  # not the withdrawn 9-frame episode
    stats = json.loads((root / "meta/stats.json").read_text())
    # a fresh writer on the same folder rebuilds the meta from scratch: identical files
    LeRobotDatasetWriter(root, fps=20, robot_type="panda", cameras=("front",), state_dim=22,
                         action_dim=4, image_size=32)
    assert pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist() == on_disk
    assert json.loads((root / "meta/stats.json").read_text()) == stats
    assert stats["action"]["count"] == [18]


def test_aggregated_stats_are_those_of_all_frames_together():
    from vla_sim.data import format as fmt

    rng = np.random.default_rng(3)
    episodes = [rng.normal(5.0, 2.0, size=(t, 4)) for t in (7, 3, 12)]
    stats = fmt.aggregate_stats([{"x": fmt.feature_stats(e)} for e in episodes])["x"]
    frames = np.concatenate(episodes)
    np.testing.assert_allclose(stats["mean"], frames.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats["std"], frames.std(0), rtol=1e-9)
    np.testing.assert_array_equal(stats["min"], frames.min(0))
    np.testing.assert_array_equal(stats["max"], frames.max(0))
    assert stats["count"].tolist() == [22]
    # quantiles are count-weighted means of the episodes' (LeRobot's approximation)
    q50 = sum(len(e) * np.quantile(e, 0.5, axis=0) for e in episodes) / 22
    np.testing.assert_allclose(stats["q50"], q50, rtol=1e-12)
    # added one at a time, the running stats are the batch ones bit for bit
    acc = fmt.StatsAccumulator()
    for e in episodes:
        acc.add({"x": fmt.feature_stats(e)})
    for name, value in acc.result()["x"].items():
        np.testing.assert_array_equal(value, stats[name])


def test_image_stats_from_histograms_equal_numpys():
    from vla_sim.data import format as fmt

    rng = np.random.default_rng(4)
    for shape in [(9, 16, 16, 3), (1, 1, 3, 3), (2, 5, 7, 3)]:
        frames = rng.integers(0, 256, shape, dtype=np.uint8)
        stats = fmt.feature_stats(frames, image=True)
        flat = frames.reshape(-1, 3).astype(np.float64) / 255.0
        for q in fmt.QUANTILES:
            np.testing.assert_allclose(stats[f"q{int(round(q * 100)):02d}"].reshape(-1),
                                       np.quantile(flat, q, axis=0), rtol=0, atol=1e-12)
        for name, value in [("min", flat.min(0)), ("max", flat.max(0)), ("mean", flat.mean(0)),
                            ("std", flat.std(0))]:
            np.testing.assert_allclose(stats[name].reshape(-1), value, rtol=0, atol=1e-12,
                                       err_msg=name)
        assert list(stats)[:5] == ["min", "max", "mean", "std", "count"]


def test_appended_rows_equal_concatenation_and_earlier_views_keep_their_rows():
    from vla_sim.data.demos import append_rows

    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8) for n in (5, 3, 4, 9)]
    held = parts[0].copy()
    views = [held]
    for part in parts[1:]:
        held = append_rows(held, part)
        views.append(held)
    for k, view in enumerate(views):  # every view still holds the rows it was handed
        assert np.array_equal(view, np.concatenate(parts[:k + 1]))
    # The second append wrote behind the first result, in its buffer (no copy).
    assert views[2].base is views[1].base
    # Appending to an older view (not the buffer's newest) copies: the newer one is untouched.
    branch = append_rows(views[1], parts[3])
    assert branch.base is not views[1].base
    assert np.array_equal(branch, np.concatenate([parts[0], parts[1], parts[3]]))
    assert np.array_equal(views[3], np.concatenate(parts))
    with pytest.raises(ValueError, match=r"cannot append rows of shape \(4, 4, 1\)"):
        append_rows(views[3], np.zeros((2, 4, 4, 1), np.uint8))
