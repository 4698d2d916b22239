"""A missing, truncated or inconsistent dataset is refused with an error naming the file."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vla_sim.data import DatasetError, LeRobotDatasetWriter, open_dataset


@pytest.fixture
def root(tmp_path, episode_factory):
    rng = np.random.default_rng(1)
    root = tmp_path / "ds"
    w = LeRobotDatasetWriter(root, fps=20, robot_type="panda", cameras=("front",), image_size=32)
    for t in (5, 6):
        w.add_episode(episode_factory(rng, t))
    return root


def test_valid_dataset_opens(root):
    assert open_dataset(root).num_episodes == 2


def test_missing_info_names_the_file(root):
    (root / "meta/info.json").unlink()
    with pytest.raises(DatasetError, match=r"meta/info.json: missing"):
        open_dataset(root)


def test_bad_codebase_version_is_refused(root):
    info = json.loads((root / "meta/info.json").read_text())
    info["codebase_version"] = "v2.1"
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"info.json: codebase_version is 'v2.1'"):
        open_dataset(root)


def test_missing_video_names_the_file(root):
    (root / "videos/observation.images.front/chunk-000/file-001.mp4").unlink()
    with pytest.raises(DatasetError, match=r"file-001.mp4: video file missing"):
        open_dataset(root)


def test_truncated_video_names_the_file(root):
    path = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"file-000.mp4: unreadable video"):
        open_dataset(root)


def test_truncated_parquet_names_the_file(root):
    path = root / "data/chunk-000/file-001.parquet"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match=r"data/chunk-000/file-001.parquet: unreadable parquet"):
        open_dataset(root)


def test_frame_count_disagreement_names_the_file(root):
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 4), path)  # 4 rows, episode metadata says 5
    with pytest.raises(DatasetError, match=r"file-000.parquet: 4 frames, episodes metadata says 5"):
        open_dataset(root)


def test_video_shorter_than_episode_names_the_file(root, tmp_path):
    from vla_sim.utils.video import encode_video_bytes

    path = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    path.write_bytes(encode_video_bytes(np.zeros((3, 32, 32, 3), np.uint8), 20))
    with pytest.raises(DatasetError, match=r"file-000.mp4: video has 3 frames, parquet/episodes say 5"):
        open_dataset(root)


def test_info_behind_episodes_is_reported_and_repaired_by_reopening(root):
    info_path = root / "meta/info.json"
    info = json.loads(info_path.read_text())
    info["total_episodes"], info["total_frames"] = 1, 5  # as if killed between the two renames
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"info.json: total_episodes=1"):
        open_dataset(root)
    LeRobotDatasetWriter(root, fps=20, robot_type="panda", cameras=("front",), image_size=32)
    assert open_dataset(root).num_episodes == 2


def test_writer_refuses_mismatched_dataset(root):
    with pytest.raises(DatasetError, match=r"info.json: existing dataset does not match.*fps 20 != 10"):
        LeRobotDatasetWriter(root, fps=10, robot_type="panda", cameras=("front",), image_size=32)


def test_missing_episodes_file_names_it(root):
    (root / "meta/episodes/chunk-000/file-000.parquet").unlink()
    with pytest.raises(DatasetError, match=r"meta/episodes/chunk-000/file-000.parquet: missing"):
        open_dataset(root)


def test_crash_mid_episode_leaves_finished_episodes_readable(root, episode_factory):
    # a killed writer leaves temp files and the data file of an uncommitted episode
    (root / "data/chunk-000/.file-002.parquet.abc.tmp").write_bytes(b"partial")
    pq.write_table(pa.table({"x": [1]}), root / "data/chunk-000/file-002.parquet")
    assert open_dataset(root).num_episodes == 2
    w = LeRobotDatasetWriter(root, fps=20, robot_type="panda", cameras=("front",), image_size=32)
    assert not (root / "data/chunk-000/.file-002.parquet.abc.tmp").exists()
    w.add_episode(episode_factory(np.random.default_rng(9), 4))
    ds = open_dataset(root)
    assert ds.num_episodes == 3 and ds.num_frames == 15
