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


# ------------------------------------------------------------------ values and metadata vs data
def _poke_column(path, column, row, index, value):
    """Rewrite one value of a vector column of a data parquet file (as a corrupted writer would)."""
    table = pq.read_table(path)
    values = np.asarray(table.column(column).combine_chunks().flatten().to_numpy()).reshape(len(table), -1).copy()
    values[row, index] = value
    flat = pa.array(values.reshape(-1), pa.float32())
    col = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    pq.write_table(table.set_column(table.column_names.index(column), column, col), path)


def _edit_info(root, edit):
    path = root / "meta/info.json"
    info = json.loads(path.read_text())
    edit(info)
    path.write_text(json.dumps(info))


@pytest.mark.parametrize("column,value", [("action", np.nan), ("action", np.inf),
                                          ("observation.state", -np.inf)])
def test_non_finite_state_or_action_is_refused_naming_file_column_and_row(root, column, value):
    _poke_column(root / "data/chunk-000/file-001.parquet", column, 3, 1, value)
    with pytest.raises(DatasetError, match=rf"data/chunk-000/file-001.parquet: column '{column}' "
                                           rf"has a non-finite value \({value}\) at row 3 "
                                           rf"\(episode 1, frame 3\)"):
        open_dataset(root)


def test_non_finite_action_is_refused_even_without_validation(root):
    from vla_sim.data import VLADataset

    _poke_column(root / "data/chunk-000/file-000.parquet", "action", 0, 2, np.nan)
    with pytest.raises(DatasetError, match=r"file-000.parquet: column 'action' has a non-finite"):
        VLADataset(root, validate=False)


def _set_fps(info, fps):
    info["fps"] = fps
    info["features"]["observation.images.front"]["info"]["video.fps"] = fps  # consistently


def test_edited_fps_is_refused_against_the_timestamps(root):
    _edit_info(root, lambda info: _set_fps(info, 10))
    with pytest.raises(DatasetError, match=r"file-000.parquet: timestamp 0.05 at row 1 \(frame 1\) "
                                           r"is not frame_index / fps = 0.1 \(info.json fps 10\)"):
        open_dataset(root)


@pytest.mark.parametrize("fps", [0, -20, "20", 20.5, None, True])
def test_fps_that_is_not_a_positive_integer_is_refused(root, fps):
    _edit_info(root, lambda info: _set_fps(info, fps))
    with pytest.raises(DatasetError, match=r"info.json: fps must be a positive integer"):
        open_dataset(root)


def test_video_timing_disagreeing_with_fps_is_refused(root):
    from vla_sim.utils.video import encode_video_bytes

    path = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    path.write_bytes(encode_video_bytes(np.zeros((5, 32, 32, 3), np.uint8), 10))
    with pytest.raises(DatasetError, match=r"file-000.mp4: video runs at 10 fps, info.json fps is 20"):
        open_dataset(root)


@pytest.mark.parametrize("key,shape,message", [
    ("observation.state", [23], r"column 'observation.state' holds 22 values per frame, "
                                r"info.json features say shape \[23\]"),
    ("action", [3], r"column 'action' holds 4 values per frame, info.json features say shape \[3\]"),
    ("observation.images.front", [64, 64, 3], r"file-000.mp4: video frames are 32x32 \(HxW\), "
                                              r"info.json features say 64x64"),
])
def test_edited_feature_shape_is_refused_against_the_data(root, key, shape, message):
    def edit(info):
        feat = info["features"][key]
        feat["shape"] = shape
        if "info" in feat:  # edited consistently: only the data can tell
            feat["info"].update({"video.height": shape[0], "video.width": shape[1]})

    _edit_info(root, edit)
    with pytest.raises(DatasetError, match=message):
        open_dataset(root)


def test_video_feature_info_disagreeing_with_fps_is_refused(root):
    _edit_info(root, lambda info: info.update(fps=10))
    with pytest.raises(DatasetError, match=r"info.json: feature 'observation.images.front' info "
                                           r"video.fps=20 disagrees with fps \(10\)"):
        open_dataset(root)


def test_malformed_features_are_refused_naming_the_feature(root):
    _edit_info(root, lambda info: info["features"]["action"].update(shape="four"))
    with pytest.raises(DatasetError, match=r"info.json: feature 'action' shape must be a list of "
                                           r"positive integers, got 'four'"):
        open_dataset(root)


def test_missing_feature_column_is_refused(root):
    _edit_info(root, lambda info: info["features"].update(
        extra={"dtype": "float32", "shape": [2], "names": None}))
    with pytest.raises(DatasetError, match=r"file-000.parquet: no column 'extra'"):
        open_dataset(root)


# ------------------------------------------------------------------ the decoded-frame cache
def test_tampered_frame_cache_is_detected_and_rebuilt(root):
    good = np.array(open_dataset(root).frames("front"))
    npy = root / ".cache/frames_front.npy"
    cache = np.load(npy, mmap_mode="r+")
    cache[:] = 0  # black frames, header and size unchanged
    cache.flush()
    del cache
    ds = open_dataset(root)
    got = ds.frames("front")
    np.testing.assert_array_equal(got, good)
    assert ds.cache_status["front"].startswith("rebuilt")
    assert "checksum" in ds.cache_status["front"]
    assert open_dataset(root).frames("front") is not None
    again = open_dataset(root)
    again.frames("front")
    assert again.cache_status["front"] == "verified"


def test_frame_cache_is_rebuilt_when_a_video_changes_with_same_size_and_mtime(root):
    import os

    from vla_sim.utils.video import encode_video_bytes

    open_dataset(root).frames("front")
    path = root / "videos/observation.images.front/chunk-000/file-000.mp4"
    st = path.stat()
    grey = encode_video_bytes(np.full((5, 32, 32, 3), 128, np.uint8), 20)
    pad = st.st_size - len(grey)
    assert pad >= 8, "the grey video must be smaller than the original"
    # a trailing 'free' box keeps the size; players and the reader skip it
    path.write_bytes(grey + pad.to_bytes(4, "big") + b"free" + bytes(pad - 8))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    ds = open_dataset(root)
    frames = ds.frames("front")
    assert np.abs(frames[:5].astype(int) - 128).max() <= 3
    assert ds.cache_status["front"].startswith("rebuilt")


def test_dataset_info_decode_reports_a_rebuilt_cache(root, capsys):
    from vla_sim.cli.main import main

    open_dataset(root).frames("front")
    cache = np.load(root / ".cache/frames_front.npy", mmap_mode="r+")
    cache[:] = 0
    cache.flush()
    del cache
    assert main(["dataset", "info", str(root), "--decode"]) == 0
    out = capsys.readouterr().out
    assert "valid     yes (videos decoded)" in out
    assert "frame cache front: rebuilt" in out


def test_dataset_info_refuses_a_nan_action_naming_it(root, capsys):
    from vla_sim.cli.main import main

    _poke_column(root / "data/chunk-000/file-000.parquet", "action", 2, 0, np.nan)
    assert main(["dataset", "info", str(root)]) == 2
    err = capsys.readouterr().err
    assert "file-000.parquet: column 'action' has a non-finite value (nan) at row 2" in err


def test_grown_dataset_decodes_only_its_new_episodes(root, episode_factory, monkeypatch):
    from vla_sim.data import reader

    open_dataset(root).frames("front")
    w = LeRobotDatasetWriter(root, fps=20, robot_type="panda", cameras=("front",), image_size=32)
    w.add_episode(episode_factory(np.random.default_rng(2), 7))
    decoded, real = [], reader.read_video
    monkeypatch.setattr(reader, "read_video", lambda path, **kw: decoded.append(path) or
                        real(path, **kw))
    ds = open_dataset(root)
    grown = np.array(ds.frames("front"))
    assert len(decoded) == 1 and ds.cache_status["front"].endswith("2 of 3 episodes kept")
    # the same frames as a cache decoded from nothing
    (root / ".cache/frames_front.npy").unlink()
    np.testing.assert_array_equal(grown, open_dataset(root).frames("front"))
    assert len(decoded) == 4


def test_stale_cache_with_wrong_bytes_is_not_reused(root, episode_factory):
    open_dataset(root).frames("front")
    cache = np.load(root / ".cache/frames_front.npy", mmap_mode="r+")
    good = np.array(cache)
    cache[:] = 0
    cache.flush()
    del cache
    w = LeRobotDatasetWriter(root, fps=20, robot_type="panda", cameras=("front",), image_size=32)
    w.add_episode(episode_factory(np.random.default_rng(2), 7))
    ds = open_dataset(root)
    np.testing.assert_array_equal(ds.frames("front")[:len(good)], good)
    assert "kept" not in ds.cache_status["front"]


def test_validating_from_an_episode_opens_only_its_files_and_later(root, episode_factory):
    w = LeRobotDatasetWriter(root, fps=20, robot_type="panda", cameras=("front",), image_size=32)
    w.add_episode(episode_factory(np.random.default_rng(2), 4))
    (root / "videos/observation.images.front/chunk-000/file-000.mp4").write_bytes(b"broken")
    open_dataset(root, validate=False).validate(first_episode=1)  # episode 0 is not opened
    with pytest.raises(DatasetError, match="file-000.mp4"):
        open_dataset(root, validate=False).validate()
    (root / "videos/observation.images.front/chunk-000/file-002.mp4").write_bytes(b"broken")
    with pytest.raises(DatasetError, match="file-002.mp4"):
        open_dataset(root, validate=False).validate(first_episode=2)


def test_low_dim_arrays_from_an_episode_are_the_tail_of_all_of_them(root):
    reader = open_dataset(root)
    every, tail = reader.low_dim_arrays(), reader.low_dim_arrays(first_episode=1)
    start = int(reader.episodes[1]["dataset_from_index"])
    assert start == 5 and len(tail["index"]) == 6
    for name, values in every.items():
        assert np.array_equal(tail[name], values[start:]), name
    assert reader.low_dim_arrays(first_episode=2) == {}
