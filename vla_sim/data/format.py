"""LeRobotDataset v3.0 layout: paths, feature schema and statistics, shared by writer and reader.

Follows ``lerobot/datasets/utils.py`` (v3.0): ``meta/info.json``, ``meta/stats.json``,
``meta/tasks.parquet``, ``meta/episodes/chunk-XXX/file-XXX.parquet``,
``data/chunk-XXX/file-XXX.parquet`` and ``videos/<key>/chunk-XXX/file-XXX.mp4``.
vla-sim writes one data file and one video file per episode (file index = episode index modulo
``chunks_size``), which v3.0 allows; every video file therefore starts at timestamp 0.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_sim.envs.goal_state import GOAL_STATE_DIM, GOAL_STATE_NAMES, GOAL_XYZ_DIM

CODEBASE_VERSION = "v3.0"
DEFAULT_CHUNK_SIZE = 1000  # max files per chunk folder, as LeRobot
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"  # all episode rows live in one file
COLLECT_STATE_PATH = "meta/vla_sim_collect.json"  # vla-sim's resumable-collection bookkeeping
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE_PATTERN + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"
CACHE_DIR = ".cache"

STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"  # LeRobot's name for privileged sim state
ACTION_KEY = "action"
REWARD_KEY = "next.reward"
DONE_KEY = "next.done"
IMAGE_KEY_PREFIX = "observation.images."

# vla-sim's per-episode replay record: extra columns in the episodes parquet (LeRobot ignores them).
VLA_COLUMNS = ("vla_sim/seed", "vla_sim/randomization", "vla_sim/instruction", "vla_sim/task",
               "vla_sim/success", "vla_sim/first_frame_sha256", "vla_sim/attempt_index",
               "vla_sim/metadata")

# Names of the 22 proprioceptive state entries (see the env contract).
STATE_NAMES_22 = (["ee_x", "ee_y", "ee_z", "ee_qx", "ee_qy", "ee_qz", "ee_qw", "gripper_opening"]
                  + [f"joint_pos_{i}" for i in range(7)] + [f"joint_vel_{i}" for i in range(7)])
ACTION_NAMES_4 = ["delta_x", "delta_y", "delta_z", "gripper"]

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # LeRobot's DEFAULT_QUANTILES


def image_key(camera: str, position: int) -> str:
    """Observation / batch key of the camera at ``position``: the first is "image" (the policy
    image), the others "<camera>_image" (so "wrist" is "wrist_image")."""
    return "image" if position == 0 else f"{camera}_image"


def video_key(camera: str) -> str:
    """Feature key of a camera stream, e.g. ``front`` -> ``observation.images.front``."""
    return IMAGE_KEY_PREFIX + camera


def chunk_file(episode_index: int, chunks_size: int) -> tuple[int, int]:
    """(chunk_index, file_index) of the files holding ``episode_index`` (one file per episode)."""
    return episode_index // chunks_size, episode_index % chunks_size


def data_file(episode_index: int, chunks_size: int) -> str:
    chunk, file = chunk_file(episode_index, chunks_size)
    return DATA_PATH.format(chunk_index=chunk, file_index=file)


def video_file(camera: str, episode_index: int, chunks_size: int) -> str:
    chunk, file = chunk_file(episode_index, chunks_size)
    return VIDEO_PATH.format(video_key=video_key(camera), chunk_index=chunk, file_index=file)


def build_features(cameras: tuple[str, ...], image_size: tuple[int, int], state_dim: int,
                   action_dim: int, fps: int, env_state_dim: int = 0) -> dict[str, dict]:
    """The ``features`` block of info.json, LeRobot's conventions (video features carry ``info``)."""
    height, width = image_size
    features: dict[str, dict] = {}
    for cam in cameras:
        features[video_key(cam)] = {
            "dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": height, "video.width": width, "video.codec": "h264",
                     "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                     "video.channels": 3, "has_audio": False},
        }
    state_names = STATE_NAMES_22 if state_dim == 22 else [f"state_{i}" for i in range(state_dim)]
    action_names = ACTION_NAMES_4 if action_dim == 4 else [f"action_{i}" for i in range(action_dim)]
    features[STATE_KEY] = {"dtype": "float32", "shape": [state_dim], "names": list(state_names)}
    if env_state_dim:
        # the goal-state layout (envs/goal_state.py): 6 positions, or 19 with image-plane labels
        names = (GOAL_STATE_NAMES[:env_state_dim] if env_state_dim in (GOAL_XYZ_DIM, GOAL_STATE_DIM)
                 else [f"env_state_{i}" for i in range(env_state_dim)])
        features[ENV_STATE_KEY] = {"dtype": "float32", "shape": [env_state_dim], "names": names}
    features[ACTION_KEY] = {"dtype": "float32", "shape": [action_dim], "names": list(action_names)}
    features[REWARD_KEY] = {"dtype": "float32", "shape": [1], "names": None}
    features[DONE_KEY] = {"dtype": "bool", "shape": [1], "names": None}
    # LeRobot's DEFAULT_FEATURES
    features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    features["frame_index"] = {"dtype": "int64", "shape": [1], "names": None}
    features["episode_index"] = {"dtype": "int64", "shape": [1], "names": None}
    features["index"] = {"dtype": "int64", "shape": [1], "names": None}
    features["task_index"] = {"dtype": "int64", "shape": [1], "names": None}
    return features


# --------------------------------------------------------------------------------------- stats

def feature_stats(array: np.ndarray, image: bool = False) -> dict[str, np.ndarray]:
    """LeRobot per-episode stats: min, max, mean, std, count and quantiles q01..q99.

    ``array`` is (T, D) for vectors, (T,) for scalars (kept as shape (1,)), or (T, H, W, 3) uint8
    for images, reduced per channel to shape (3, 1, 1) and scaled to [0, 1] as LeRobot does.
    """
    if image and array.dtype == np.uint8:
        moments, quantiles = _uint8_image_stats(array.reshape(-1, array.shape[-1]))
    else:
        flat = (array.reshape(-1, array.shape[-1]).astype(np.float64) / 255.0 if image  # (THW, 3)
                else array.astype(np.float64).reshape(array.shape[0], -1))
        moments = {"min": flat.min(axis=0), "max": flat.max(axis=0), "mean": flat.mean(axis=0),
                   "std": flat.std(axis=0)}
        quantiles = np.quantile(flat, QUANTILES, axis=0)
    stats = {**moments, "count": np.array([array.shape[0]])}
    for q, value in zip(QUANTILES, quantiles):
        stats[f"q{int(round(q * 100)):02d}"] = value
    if image:
        stats = {k: v if k == "count" else v.reshape(-1, 1, 1) for k, v in stats.items()}
    return stats


def _uint8_image_stats(pixels: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(min, max, mean, std; quantiles (Q, C)) of (N, C) uint8 values scaled to [0, 1], per
    channel, from 256-bin histograms: numpy's figures on the float64 pixels to rounding
    (tests/data) at ~2 ms an episode, where converting every pixel to float64 and sorting cost
    ~30 ms in the rollout workers. Quantiles interpolate linearly between the two order
    statistics around each position, as ``np.quantile`` does."""
    n, channels = pixels.shape
    values = np.arange(256) / 255.0
    moments = {k: np.empty(channels) for k in ("min", "max", "mean", "std")}
    quantiles = np.empty((len(QUANTILES), channels))
    for c in range(channels):
        counts = np.bincount(pixels[:, c], minlength=256)
        present = np.flatnonzero(counts)
        moments["min"][c], moments["max"][c] = values[present[0]], values[present[-1]]
        mean = float(counts @ values) / n
        moments["mean"][c] = mean
        moments["std"][c] = np.sqrt(float(counts @ (values - mean) ** 2) / n)
        cumulative = np.cumsum(counts)
        for i, q in enumerate(QUANTILES):
            pos = (n - 1) * q
            low = int(np.floor(pos))
            below = np.searchsorted(cumulative, [low, min(low + 1, n - 1)], side="right")
            a, b = below / 255.0
            quantiles[i, c] = a + (b - a) * (pos - low)
    return moments, quantiles


def aggregate_stats(per_episode: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict]:
    """Dataset stats from episode stats: as LeRobot's ``aggregate_stats`` (pooled mean/variance,
    count-weighted quantiles)."""
    acc = StatsAccumulator()
    for episode in per_episode:
        acc.add(episode)
    return acc.result()


class StatsAccumulator:
    """:func:`aggregate_stats` one episode at a time: running count-weighted sums, so a writer
    that rewrites ``stats.json`` at every commit pays O(1) per episode, not O(episodes) (at
    900 episodes re-aggregating took ~80 ms a commit, CPU taken from the rollout workers).
    Episodes added in the same order give the same numbers, bit for bit."""

    def __init__(self) -> None:
        self._sums: dict[str, dict[str, Any]] = {}

    def add(self, episode: dict[str, dict[str, np.ndarray]]) -> None:
        for key, e in episode.items():
            count = float(np.asarray(e["count"]).reshape(-1)[0])
            mean = np.asarray(e["mean"], dtype=np.float64)
            std = np.asarray(e["std"], dtype=np.float64)
            terms = {"mean": count * mean, "square": count * (std ** 2 + mean ** 2),
                     **{name: count * np.asarray(v, dtype=np.float64)
                        for name, v in e.items() if name.startswith("q")}}
            low, high = np.asarray(e["min"]), np.asarray(e["max"])
            acc = self._sums.get(key)
            if acc is None:
                self._sums[key] = {"count": count, "min": low, "max": high, **terms}
                continue
            acc["count"] += count
            acc["min"], acc["max"] = np.minimum(acc["min"], low), np.maximum(acc["max"], high)
            for name, value in terms.items():
                acc[name] = acc[name] + value

    def result(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for key, acc in self._sums.items():
            total = acc["count"]
            mean = acc["mean"] / total
            var = np.maximum(acc["square"] / total - mean ** 2, 0.0)
            out[key] = {"min": acc["min"], "max": acc["max"], "mean": mean, "std": np.sqrt(var),
                        "count": np.array([int(total)]),
                        **{name: v / total for name, v in acc.items() if name.startswith("q")}}
        return out


def stats_to_json(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {k: {s: np.asarray(v).tolist() for s, v in d.items()} for k, d in stats.items()}


def flatten_stats(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, list]:
    """``{"stats/<feature>/<stat>": list}`` columns for the episodes parquet (LeRobot's layout)."""
    return {f"stats/{k}/{s}": np.asarray(v).tolist() for k, d in stats.items() for s, v in d.items()}


def unflatten_stats(row: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for col, value in row.items():
        if not col.startswith("stats/"):
            continue
        feature, stat = col[len("stats/"):].rsplit("/", 1)
        out.setdefault(feature, {})[stat] = np.asarray(_to_nested_list(value))
    return out


def _to_nested_list(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_to_nested_list(v) for v in value] if value.dtype == object else value.tolist()
    return value


class DatasetError(ValueError):
    """A dataset folder is missing, truncated or inconsistent; the message names the file."""


# ------------------------------------------------------------------------------------- mp4 info

@dataclass(frozen=True)
class Mp4Info:
    """What an MP4's index says about its video track, read without decoding."""

    frames: int  # number of samples (``stsz``)
    width: int  # coded size of the first sample entry (``avc1``/``hvc1``... ``stsd``)
    height: int
    fps: float | None  # frames / track duration (``mdhd`` timescale, ``stts`` deltas); None if 0


def mp4_info(path: Path) -> Mp4Info:
    """Frame count, frame size and frame rate of an MP4's video track, from its ``moov`` index.

    Raises ``ValueError`` when the file has no ``moov`` box (typically a truncated file: ffmpeg
    writes ``moov`` last), no video track, or a box that runs past its parent.
    """
    data = Path(path).read_bytes()
    moov = _find_box(data, 0, len(data), b"moov")
    if moov is None:
        raise ValueError("no 'moov' box (file truncated or not an MP4)")
    pos, end = moov
    while pos + 8 <= end:
        size, kind, header = _box_header(data, pos)
        if size < header or pos + size > end:
            raise ValueError("corrupt box inside 'moov'")
        if kind == b"trak":
            mdia = _find_box(data, pos + header, pos + size, b"mdia")
            if mdia is not None:
                hdlr = _find_box(data, *mdia, b"hdlr")
                if hdlr is not None and data[hdlr[0] + 8:hdlr[0] + 12] == b"vide":
                    return _video_track_info(data, mdia)
        pos += size
    raise ValueError("no video track")


def _video_track_info(data: bytes, mdia: tuple[int, int]) -> Mp4Info:
    try:
        stbl = _find_path(data, mdia, (b"minf", b"stbl"))
        stsz = _find_box(data, *stbl, b"stsz") if stbl else None
        if stsz is None:
            raise ValueError("video track has no 'stsz' box")
        frames = struct.unpack(">I", data[stsz[0] + 8:stsz[0] + 12])[0]
        stsd = _find_box(data, *stbl, b"stsd")
        if stsd is None:
            raise ValueError("video track has no 'stsd' box")
        entry = stsd[0] + 8  # version/flags, entry_count, then the first sample entry box
        # visual sample entry: 8 header, 6 reserved, 2 data ref, 16 pre-defined, width, height
        width, height = struct.unpack(">HH", data[entry + 32:entry + 36])
        fps = None
        mdhd = _find_box(data, *mdia, b"mdhd")
        stts = _find_box(data, *stbl, b"stts")
        if mdhd is not None and stts is not None:
            at = mdhd[0] + (20 if data[mdhd[0]] == 1 else 12)  # version 1: 64-bit times
            timescale = struct.unpack(">I", data[at:at + 4])[0]
            n = struct.unpack(">I", data[stts[0] + 4:stts[0] + 8])[0]
            ticks = sum(c * d for c, d in (struct.unpack(">II", data[stts[0] + 8 + 8 * i:
                                                                   stts[0] + 16 + 8 * i])
                                          for i in range(n)))
            if timescale and ticks:
                fps = frames * timescale / ticks
    except struct.error:
        raise ValueError("video track index is truncated") from None
    return Mp4Info(frames=frames, width=width, height=height, fps=fps)


def mp4_frame_count(path: Path) -> int:
    """Number of video samples (frames) in an MP4 (see :func:`mp4_info`)."""
    return mp4_info(path).frames


def _box_header(data: bytes, pos: int) -> tuple[int, bytes, int]:
    size, kind = struct.unpack(">I4s", data[pos:pos + 8])
    header = 8
    if size == 1:
        size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        header = 16
    elif size == 0:
        size = len(data) - pos
    return size, kind, header


def _find_box(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """(payload start, payload end) of the first box of ``kind`` in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, k, header = _box_header(data, pos)
        if size < header or pos + size > end:
            return None
        if k == kind:
            return pos + header, pos + size
        pos += size
    return None


def _find_path(data: bytes, box: tuple[int, int], kinds: tuple[bytes, ...]) -> tuple[int, int] | None:
    for kind in kinds:
        found = _find_box(data, box[0], box[1], kind)
        if found is None:
            return None
        box = found
    return box
