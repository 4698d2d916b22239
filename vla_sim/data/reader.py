"""Open, validate and read a LeRobotDataset v3.0 folder written by vla-sim (or LeRobot-like).

Validation checks the metadata against the data itself: every frame file's columns have the
dtypes and shapes info.json declares, states, actions and other float columns are finite, the
timestamps are ``frame_index / fps``, and each video's frame count, size and frame rate (from the
MP4 index) match. Errors name the file, the column and the first bad row.

Videos are decoded once into a memory-mapped uint8 cache per camera
(``<root>/.cache/frames_<camera>.npy``). Its key file records a SHA-256 of the source videos'
bytes and the episodes file, and a SHA-256 of the cache itself: a stale cache (the videos
changed) or a tampered one (the .npy was edited) is rebuilt from the videos, never trained on.
Nothing decodes video per item.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vla_sim.data import format as fmt
from vla_sim.data.format import DatasetError
from vla_sim.utils.io import atomic_write_text
from vla_sim.utils.video import read_video

log = logging.getLogger(__name__)

CACHE_FORMAT = 2  # bump when the key file's meaning changes: older caches are rebuilt
TIMESTAMP_TOLERANCE_S = 1e-4  # LeRobot's default tolerance_s
VIDEO_FPS_TOLERANCE = 0.01  # relative
_ARROW_DTYPES = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(),
                 "int32": pa.int32(), "bool": pa.bool_()}

REQUIRED_INFO_KEYS = ("codebase_version", "fps", "features", "total_episodes", "total_frames",
                      "total_tasks", "chunks_size", "data_path", "video_path")


class DatasetReader:
    """Read-only view of a dataset folder; ``validate=True`` checks it fully on open (cheap: no
    decoding; video frame counts come from the MP4 index)."""

    def __init__(self, root: str | Path, validate: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder does not exist")
        self.info = _load_json(self.root / fmt.INFO_PATH)
        missing = [k for k in REQUIRED_INFO_KEYS if k not in self.info]
        if missing:
            raise DatasetError(f"{self.root / fmt.INFO_PATH}: missing keys {missing}")
        if self.info["codebase_version"] != fmt.CODEBASE_VERSION:
            raise DatasetError(f"{self.root / fmt.INFO_PATH}: codebase_version is "
                               f"{self.info['codebase_version']!r}, expected {fmt.CODEBASE_VERSION!r}")
        _check_info(self.info, self.root / fmt.INFO_PATH)
        self.cache_status: dict[str, str] = {}  # camera -> "verified" / "built" / "rebuilt (...)"
        self.episodes = self._load_episodes()
        self.tasks = self._load_tasks()
        if validate:
            self.validate()

    # ------------------------------------------------------------------ properties
    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return int(sum(int(e["length"]) for e in self.episodes))

    @property
    def cameras(self) -> list[str]:
        """Camera names in feature order (the first is the policy image)."""
        return [k[len(fmt.IMAGE_KEY_PREFIX):] for k, f in self.info["features"].items()
                if f["dtype"] == "video" and k.startswith(fmt.IMAGE_KEY_PREFIX)]

    def image_shape(self, camera: str) -> tuple[int, int, int]:
        return tuple(self.info["features"][fmt.video_key(camera)]["shape"])  # (H, W, 3)

    @property
    def task_names(self) -> list[str]:
        """Instruction string of each task_index."""
        names = [""] * len(self.tasks)
        for text, idx in self.tasks.items():
            names[idx] = text
        return names

    # ------------------------------------------------------------------ loading
    def _load_episodes(self) -> list[dict[str, Any]]:
        path = self.root / fmt.EPISODES_PATH
        if int(self.info["total_episodes"]) == 0 and not path.exists():
            return []
        files = sorted((self.root / fmt.EPISODES_DIR).glob("*/*.parquet"))
        if not files:
            raise DatasetError(f"{path}: missing (info.json lists {self.info['total_episodes']} episodes)")
        rows: list[dict[str, Any]] = []
        for f in files:
            rows.extend(_read_parquet(f).to_pylist())
        rows.sort(key=lambda r: r["episode_index"])
        return rows

    def _load_tasks(self) -> dict[str, int]:
        path = self.root / fmt.TASKS_PATH
        if not path.exists():
            if int(self.info["total_tasks"]) == 0:
                return {}
            raise DatasetError(f"{path}: missing")
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DatasetError(f"{path}: unreadable parquet ({exc})") from exc
        if "task_index" not in df.columns:
            raise DatasetError(f"{path}: no task_index column")
        return {str(t): int(i) for t, i in zip(df.index, df["task_index"])}

    # ------------------------------------------------------------------ validation
    def validate(self, first_episode: int = 0) -> None:
        """Raise :class:`DatasetError` naming the file at fault if anything disagrees.

        ``first_episode``: open and check only the data and video files holding episodes from
        this one on (the meta files and episode ranges are always checked): for a caller that
        validated the earlier episodes already (a DAgger round reads only what it appended)."""
        info_path = self.root / fmt.INFO_PATH
        n, frames = self.num_episodes, self.num_frames
        if n != int(self.info["total_episodes"]):
            raise DatasetError(f"{info_path}: total_episodes={self.info['total_episodes']} but "
                               f"{fmt.EPISODES_PATH} has {n} episodes (interrupted write? reopening "
                               f"the dataset with LeRobotDatasetWriter / re-running collect repairs it)")
        if frames != int(self.info["total_frames"]):
            raise DatasetError(f"{info_path}: total_frames={self.info['total_frames']} but the "
                               f"episodes sum to {frames}")
        if len(self.tasks) != int(self.info["total_tasks"]):
            raise DatasetError(f"{info_path}: total_tasks={self.info['total_tasks']} but "
                               f"{fmt.TASKS_PATH} has {len(self.tasks)}")
        if not (self.root / fmt.STATS_PATH).exists():
            raise DatasetError(f"{self.root / fmt.STATS_PATH}: missing")
        ep_path = self.root / fmt.EPISODES_PATH
        expected_start = 0
        data_rows: dict[str, int] = {}
        data_episodes: dict[str, dict[int, int]] = {}  # file -> episode index -> length
        video_frames: dict[str, int] = {}
        video_camera: dict[str, str] = {}
        fresh: set[str] = set()  # the data and video files to open (episodes first_episode..)
        for i, ep in enumerate(self.episodes):
            if ep["episode_index"] != i:
                raise DatasetError(f"{ep_path}: episode_index {ep['episode_index']} at row {i}")
            if ep["dataset_from_index"] != expected_start or \
                    ep["dataset_to_index"] - ep["dataset_from_index"] != ep["length"]:
                raise DatasetError(f"{ep_path}: episode {i} frame range "
                                   f"[{ep['dataset_from_index']}, {ep['dataset_to_index']}) does not "
                                   f"follow on from {expected_start} with length {ep['length']}")
            expected_start = ep["dataset_to_index"]
            dpath = self.data_path(i)
            data_rows[dpath] = data_rows.get(dpath, 0) + int(ep["length"])
            data_episodes.setdefault(dpath, {})[i] = int(ep["length"])
            if i >= first_episode:
                fresh.add(dpath)
            for cam in self.cameras:
                vpath = self.video_path(cam, i)
                video_frames[vpath] = video_frames.get(vpath, 0) + int(ep["length"])
                video_camera[vpath] = cam
                if i >= first_episode:
                    fresh.add(vpath)
        for rel, rows in data_rows.items():
            if rel not in fresh:
                continue
            path = self.root / rel
            if not path.exists():
                raise DatasetError(f"{path}: data file missing")
            try:
                got = pq.read_metadata(path).num_rows
            except Exception as exc:
                raise DatasetError(f"{path}: unreadable parquet ({exc})") from exc
            if got != rows:
                raise DatasetError(f"{path}: {got} frames, episodes metadata says {rows}")
            table = _read_parquet(path)
            self._check_frame_table(table, path)
            if "episode_index" in table.column_names:
                ids, counts = np.unique(_column_values(table, "episode_index", path)[:, 0],
                                        return_counts=True)
                got_eps = {int(e): int(c) for e, c in zip(ids, counts)}
                if got_eps != data_episodes[rel]:
                    raise DatasetError(f"{path}: rows per episode_index {got_eps}, "
                                       f"{fmt.EPISODES_PATH} says {data_episodes[rel]}")
        for rel, count in video_frames.items():
            if rel not in fresh:
                continue
            path = self.root / rel
            if not path.exists():
                raise DatasetError(f"{path}: video file missing")
            try:
                video = fmt.mp4_info(path)
            except (ValueError, OSError) as exc:
                raise DatasetError(f"{path}: unreadable video ({exc})") from exc
            if video.frames != count:
                raise DatasetError(f"{path}: video has {video.frames} frames, parquet/episodes "
                                   f"say {count}")
            h, w, _ = self.image_shape(video_camera[rel])
            if (video.height, video.width) != (h, w):
                raise DatasetError(f"{path}: video frames are {video.height}x{video.width} (HxW), "
                                   f"info.json features say {h}x{w}")
            # one-frame videos have no duration to time
            if video.fps is not None and video.frames > 1 and \
                    abs(video.fps - self.fps) > VIDEO_FPS_TOLERANCE * self.fps:
                raise DatasetError(f"{path}: video runs at {video.fps:.4g} fps, info.json fps is "
                                   f"{self.fps}")

    def _check_frame_table(self, table: pa.Table, path: Path) -> None:
        """The frame data of one parquet file against info.json: every non-video feature is a
        column of the declared dtype and shape, float columns are finite, and timestamps are
        ``frame_index / fps``. Raises :class:`DatasetError` naming the column and first bad row."""
        n = len(table)
        names = set(table.column_names)
        for key, feat in self.info["features"].items():
            if feat["dtype"] in ("video", "image"):
                continue
            if key not in names:
                raise DatasetError(f"{path}: no column {key!r} (info.json features declare it)")
            values = _column_values(table, key, path)
            width = values.shape[1]
            want = math.prod(feat["shape"])
            if width != want:
                raise DatasetError(f"{path}: column {key!r} holds {width} values per frame, "
                                   f"info.json features say shape {list(feat['shape'])}")
            want_type = _ARROW_DTYPES.get(feat["dtype"])
            got_type = _value_type(table.schema.field(key).type)
            if want_type is not None and got_type != want_type:
                raise DatasetError(f"{path}: column {key!r} is {got_type}, info.json features "
                                   f"say {feat['dtype']}")
            if np.issubdtype(values.dtype, np.floating):
                bad = ~np.isfinite(values)
                if bad.any():
                    row, col = (int(i) for i in np.argwhere(bad)[0])
                    raise DatasetError(
                        f"{path}: column {key!r} has a non-finite value ({values[row, col]}) at "
                        f"row {row}{_where(table, row)}, entry {col}; a dataset must hold finite "
                        f"values (re-collect or drop that episode)")
        if n and "timestamp" in names and "frame_index" in names:
            ts = _column_values(table, "timestamp", path)[:, 0].astype(np.float64)
            frame = _column_values(table, "frame_index", path)[:, 0]
            expected = frame.astype(np.float64) / self.fps
            off = np.abs(ts - expected) > TIMESTAMP_TOLERANCE_S
            if off.any():
                row = int(np.argmax(off))
                raise DatasetError(
                    f"{path}: timestamp {ts[row]:.6g} at row {row} (frame "
                    f"{int(frame[row])}) is not frame_index / fps = "
                    f"{expected[row]:.6g} (info.json fps {self.fps}); info.json fps does not "
                    f"match the data")

    # ------------------------------------------------------------------ paths
    def data_path(self, episode_index: int) -> str:
        ep = self.episodes[episode_index]
        return self.info["data_path"].format(chunk_index=ep["data/chunk_index"],
                                             file_index=ep["data/file_index"])

    def video_path(self, camera: str, episode_index: int) -> str:
        ep, key = self.episodes[episode_index], fmt.video_key(camera)
        return self.info["video_path"].format(video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"],
                                              file_index=ep[f"videos/{key}/file_index"])

    # ------------------------------------------------------------------ data
    def low_dim_arrays(self, first_episode: int = 0) -> dict[str, np.ndarray]:
        """All frames' non-image columns, concatenated in index order, as numpy arrays; with
        ``first_episode``, those of the episodes from that one on only."""
        tables = []
        for rel in dict.fromkeys(self.data_path(i)
                                 for i in range(first_episode, self.num_episodes)):
            table = _read_parquet(self.root / rel)
            self._check_frame_table(table, self.root / rel)  # even unvalidated: never a NaN out
            if first_episode and "episode_index" in table.column_names:  # a shared file
                episode = _column_values(table, "episode_index", self.root / rel)[:, 0]
                table = table.filter(pa.array(episode >= first_episode))
            tables.append(table)
        if not tables:
            return {}
        start = int(self.episodes[first_episode]["dataset_from_index"]) if first_episode else 0
        table = pa.concat_tables(tables)
        out = {}
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
                out[name] = np.asarray(col.flatten().to_numpy(zero_copy_only=False)).reshape(len(col), -1)
            else:
                out[name] = col.to_numpy(zero_copy_only=False)
        order = np.argsort(out["index"], kind="stable")
        if not np.array_equal(out["index"][order], np.arange(start, start + len(order))):
            raise DatasetError(f"{self.root / 'data'}: frame 'index' column is not "
                               f"{start}..{start + len(order) - 1}")
        return {k: v[order] for k, v in out.items()}

    def frames_path(self, camera: str) -> Path:
        """Where :meth:`frames` keeps the decoded frames of ``camera``."""
        return self.root / fmt.CACHE_DIR / f"frames_{camera}.npy"

    def frames(self, camera: str) -> np.ndarray:
        """(total_frames, H, W, 3) uint8 memmap of one camera, decoding the videos once.

        The cache is reused only when its key file's source checksum (episodes file, video
        bytes, frame shape) matches the dataset and the cache's own SHA-256 matches its bytes;
        otherwise it is rebuilt (``cache_status[camera]`` says which and why, and a tampered
        cache is logged as a warning naming the file). A rebuild copies, from an intact older
        cache, the frames of every episode whose video and frame range are unchanged, and
        decodes only the others: a dataset that grows (collection resumed, DAgger rounds)
        decodes its new episodes only."""
        self._check_camera(camera)
        npy = self.frames_path(camera)
        key_file = npy.with_suffix(".key")
        h, w, _ = self.image_shape(camera)
        episodes = self._episode_sources(camera)
        sources = self._sources_sha256(camera, episodes)
        reason, reusable = "built", {}
        if npy.exists():
            reason = self._cache_problem(npy, key_file, sources)
            if reason is None:
                self.cache_status[camera] = "verified"
                return np.load(npy, mmap_mode="r")
            level = logging.WARNING if "checksum" in reason else logging.INFO
            log.log(level, "%s: %s; rebuilding it from the videos", npy, reason)
            if reason.startswith("stale"):  # intact but out of date: keep what still holds
                reusable = self._reusable_episodes(npy, key_file, episodes, (h, w))
            reason = f"rebuilt ({reason})"
        npy.parent.mkdir(parents=True, exist_ok=True)
        tmp = npy.parent / f".frames_{camera}.{os.getpid()}.tmp.npy"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(self.num_frames, h, w, 3))
        if reusable:
            old = np.load(npy, mmap_mode="r")
            for i, (start, stop) in reusable.items():
                out[start:stop] = old[start:stop]
            del old

        def decode_one(i: int) -> None:
            ep = self.episodes[i]
            out[ep["dataset_from_index"]:ep["dataset_to_index"]] = self._decode(camera, i)

        try:
            _parallel(decode_one, [i for i in range(self.num_episodes) if i not in reusable])
            out.flush()
            del out
            digest = _file_sha256(tmp)
            os.replace(tmp, npy)
        except BaseException:
            if tmp.exists():
                tmp.unlink()
            raise
        atomic_write_text(key_file, json.dumps({"format": CACHE_FORMAT, "sources_sha256": sources,
                                                "frames_sha256": digest,
                                                "shape": [self.num_frames, h, w, 3],
                                                "episodes": episodes}))
        if reusable:
            reason += f", {len(reusable)} of {self.num_episodes} episodes kept"
        self.cache_status[camera] = reason
        return np.load(npy, mmap_mode="r")

    def decode_frames(self, camera: str, episodes: list[int]) -> np.ndarray:
        """(frames, H, W, 3) uint8: the frames of ``episodes`` of one camera, in that order,
        decoded from their videos without the cache. For a caller that holds the other
        episodes' frames already: DAgger decodes only each round's new rollouts."""
        self._check_camera(camera)
        lengths = [int(self.episodes[i]["length"]) for i in episodes]
        out = np.empty((sum(lengths), *self.image_shape(camera)), dtype=np.uint8)
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(int)

        def decode_one(k: int) -> None:
            out[starts[k]:starts[k + 1]] = self._decode(camera, episodes[k])

        _parallel(decode_one, list(range(len(episodes))))
        return out

    def _check_camera(self, camera: str) -> None:
        if camera not in self.cameras:
            raise DatasetError(f"{self.root / fmt.INFO_PATH}: no camera {camera!r}; "
                               f"cameras: {self.cameras}")

    def _decode(self, camera: str, i: int) -> np.ndarray:
        """Episode ``i``'s frames of ``camera``, checked against its recorded size and length."""
        h, w, _ = self.image_shape(camera)
        path = self.root / self.video_path(camera, i)
        try:
            video = read_video(path, expected_shape=(h, w))
        except Exception as exc:
            raise DatasetError(f"{path}: cannot decode ({exc})") from exc
        length = self.episodes[i]["length"]
        if len(video) != length:
            raise DatasetError(f"{path}: decoded {len(video)} frames, episode {i} has {length}")
        return video

    def _cache_problem(self, npy: Path, key_file: Path, sources: str) -> str | None:
        """Why the cache at ``npy`` may not be used, or None when it is current and intact."""
        try:
            key = json.loads(key_file.read_text())
        except FileNotFoundError:
            return "no key file"
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "unreadable key file"
        if not isinstance(key, dict) or key.get("format") != CACHE_FORMAT:
            return "key file from another vla-sim version"
        if key.get("sources_sha256") != sources:
            return "stale: the videos or episodes changed since it was built"
        if _file_sha256(npy) != key.get("frames_sha256"):
            return "its bytes do not match the checksum recorded when it was built (modified?)"
        return None

    def _episode_sources(self, camera: str) -> list[str]:
        """Per episode, a SHA-256 of what its frames are decoded from and where they go: its
        video's path and bytes and its frame range."""
        out = []
        for i in range(self.num_episodes):
            ep, rel = self.episodes[i], self.video_path(camera, i)
            try:
                video = hashlib.sha256((self.root / rel).read_bytes()).hexdigest()
            except FileNotFoundError:
                raise DatasetError(f"{self.root / rel}: video file missing") from None
            where = f"{i}:{rel}:{ep['dataset_from_index']}:{ep['dataset_to_index']}:{video}"
            out.append(hashlib.sha256(where.encode()).hexdigest())
        return out

    def _sources_sha256(self, camera: str, episodes: list[str] | None = None) -> str:
        """SHA-256 over what the cache is decoded from: the episodes file, each video's path and
        bytes, and the frame shape."""
        h = hashlib.sha256()
        h.update(json.dumps([list(self.image_shape(camera)), self.num_frames]).encode())
        h.update((self.root / fmt.EPISODES_PATH).read_bytes() if self.episodes else b"")
        for digest in self._episode_sources(camera) if episodes is None else episodes:
            h.update(digest.encode())
        return h.hexdigest()

    def _reusable_episodes(self, npy: Path, key_file: Path, episodes: list[str],
                           shape: tuple[int, int]) -> dict[int, tuple[int, int]]:
        """Episodes whose frames the out-of-date cache ``npy`` holds unchanged (same video
        bytes, same frame range), as ``{episode: (start, stop)}``; none unless the old cache's
        bytes match their recorded checksum and its frames have this shape."""
        try:
            key = json.loads(key_file.read_text())
            old = list(key["episodes"])
            old_shape = [int(v) for v in key["shape"]]
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        if old_shape[1:] != [*shape, 3] or _file_sha256(npy) != key.get("frames_sha256"):
            return {}
        return {i: (int(self.episodes[i]["dataset_from_index"]),
                    int(self.episodes[i]["dataset_to_index"]))
                for i, digest in enumerate(episodes[:len(old)]) if old[i] == digest
                and int(self.episodes[i]["dataset_to_index"]) <= old_shape[0]}

    def episode_record(self, episode_index: int) -> dict[str, Any]:
        """What is needed to replay an episode: seed, randomization sample, instruction, task,
        success, first-frame hash, attempt index, length."""
        ep = self.episodes[episode_index]
        return {
            "episode_index": episode_index, "length": int(ep["length"]),
            "seed": ep.get("vla_sim/seed"),
            "randomization": json.loads(ep["vla_sim/randomization"]) if ep.get("vla_sim/randomization") else None,
            "instruction": ep.get("vla_sim/instruction", (ep.get("tasks") or [""])[0]),
            "task": ep.get("vla_sim/task"), "success": ep.get("vla_sim/success"),
            "first_frame_sha256": ep.get("vla_sim/first_frame_sha256"),
            "attempt_index": ep.get("vla_sim/attempt_index"),
            "metadata": json.loads(ep["vla_sim/metadata"]) if ep.get("vla_sim/metadata") else {},
        }

    def episode_arrays(self, episode_index: int) -> dict[str, Any]:
        """One episode's states, actions, rewards, dones, decoded images (camera -> array) and,
        where recorded, ``env_states`` (goal state per step)."""
        ep = self.episodes[episode_index]
        table = _read_parquet(self.root / self.data_path(episode_index))
        table = table.filter(pc.equal(table.column("episode_index"), episode_index))
        state = np.asarray(table.column(fmt.STATE_KEY).combine_chunks().flatten().to_numpy()).reshape(len(table), -1)
        action = np.asarray(table.column(fmt.ACTION_KEY).combine_chunks().flatten().to_numpy()).reshape(len(table), -1)
        images = {cam: read_video(self.root / self.video_path(cam, episode_index))
                  for cam in self.cameras}
        out = {"states": state, "actions": action,
               "rewards": table.column(fmt.REWARD_KEY).to_numpy(),
               "dones": table.column(fmt.DONE_KEY).to_numpy(zero_copy_only=False),
               "instruction": (ep.get("tasks") or [""])[0], "images": images}
        if fmt.ENV_STATE_KEY in table.column_names:
            out["env_states"] = np.asarray(table.column(fmt.ENV_STATE_KEY).combine_chunks()
                                           .flatten().to_numpy()).reshape(len(table), -1)
        return out

    def summary(self) -> dict[str, Any]:
        """Counts for ``vla-sim dataset info``."""
        task_counts: dict[str, int] = {}
        name_counts: dict[str, int] = {}
        success = 0
        for ep in self.episodes:
            for t in ep.get("tasks") or []:
                task_counts[t] = task_counts.get(t, 0) + 1
            name = ep.get("vla_sim/task") or "?"
            name_counts[name] = name_counts.get(name, 0) + 1
            success += bool(ep.get("vla_sim/success"))
        lengths = [int(e["length"]) for e in self.episodes]
        return {
            "root": str(self.root), "codebase_version": self.info["codebase_version"],
            "robot_type": self.info.get("robot_type"), "fps": self.fps,
            "episodes": self.num_episodes, "frames": self.num_frames,
            "episode_length": {"min": min(lengths), "mean": float(np.mean(lengths)), "max": max(lengths)}
            if lengths else None,
            "cameras": {cam: list(self.image_shape(cam)) for cam in self.cameras},
            "tasks": name_counts, "instructions": task_counts,
            "successful_episodes": success,
            "vla_sim": self.info.get("vla_sim", {}),
        }


def open_dataset(root: str | Path, validate: bool = True) -> DatasetReader:
    """Open (and by default validate) a dataset folder; raises :class:`DatasetError`."""
    return DatasetReader(root, validate=validate)


def _parallel(fn: Any, items: list[int]) -> None:
    """``fn`` over ``items`` on a few threads: PyAV lets go of the GIL while it decodes, so they
    overlap (160 clips on 2 cores: 1.3 s against 2.8 s one after another)."""
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(fn, items))


def _load_json(path: Path) -> dict:
    if not path.exists():
        raise DatasetError(f"{path}: missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc


def _read_parquet(path: Path) -> pa.Table:
    if not path.exists():
        raise DatasetError(f"{path}: missing")
    try:
        return pq.read_table(path)
    except Exception as exc:  # ArrowInvalid, OSError... for truncated files
        raise DatasetError(f"{path}: unreadable parquet ({exc})") from exc


def _check_info(info: dict, path: Path) -> None:
    """info.json's own structure: the types every later check and reader relies on."""
    fps = info["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) \
            or fps <= 0 or fps != int(fps):
        raise DatasetError(f"{path}: fps must be a positive integer, got {fps!r}")
    for key in ("total_episodes", "total_frames", "total_tasks", "chunks_size"):
        v = info[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "chunks_size" else 0):
            raise DatasetError(f"{path}: {key} must be an integer >= "
                               f"{1 if key == 'chunks_size' else 0}, got {v!r}")
    for key in ("data_path", "video_path"):
        if not isinstance(info[key], str):
            raise DatasetError(f"{path}: {key} must be a path pattern string, got {info[key]!r}")
    features = info["features"]
    if not isinstance(features, dict):
        raise DatasetError(f"{path}: features must be a mapping, got {type(features).__name__}")
    for name, feat in features.items():
        if not isinstance(feat, dict) or not isinstance(feat.get("dtype"), str):
            raise DatasetError(f"{path}: feature {name!r} needs a 'dtype' string, got {feat!r}")
        shape = feat.get("shape")
        if not isinstance(shape, list) or not shape or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise DatasetError(f"{path}: feature {name!r} shape must be a list of positive "
                               f"integers, got {shape!r}")
        if feat["dtype"] == "video":
            if len(shape) != 3 or shape[2] != 3:
                raise DatasetError(f"{path}: video feature {name!r} shape must be [height, width, "
                                   f"3], got {shape}")
            vinfo = feat.get("info") or {}
            declared = {"video.fps": fps, "video.height": shape[0], "video.width": shape[1]}
            for k, want in declared.items():
                if k in vinfo and vinfo[k] != want:
                    raise DatasetError(f"{path}: feature {name!r} info {k}={vinfo[k]!r} disagrees "
                                       f"with {'fps' if k == 'video.fps' else 'its shape'} ({want})")
    for key in (fmt.STATE_KEY, fmt.ACTION_KEY):
        if key not in features:
            raise DatasetError(f"{path}: features has no {key!r}")


def _column_values(table: pa.Table, name: str, path: Path) -> np.ndarray:
    """(rows, width) numpy values of a scalar or list column."""
    col = table.column(name).combine_chunks()
    n = len(col)
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type) \
            or pa.types.is_large_list(col.type):
        if col.null_count:
            raise DatasetError(f"{path}: column {name!r} has null rows")
        flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False))
        if pa.types.is_fixed_size_list(col.type):
            return flat.reshape(n, col.type.list_size)
        lengths = np.asarray(pc.list_value_length(col).to_numpy(zero_copy_only=False))
        if n and (lengths != lengths[0]).any():
            row = int(np.argmax(lengths != lengths[0]))
            raise DatasetError(f"{path}: column {name!r} has {lengths[row]} values at row {row}, "
                               f"{lengths[0]} at row 0")
        return flat.reshape(n, int(lengths[0]) if n else 0)
    if pa.types.is_primitive(col.type) or pa.types.is_boolean(col.type):
        if col.null_count:
            row = int(np.argmax(np.asarray(col.is_null().to_numpy(zero_copy_only=False))))
            raise DatasetError(f"{path}: column {name!r} is null at row {row}")
        return np.asarray(col.to_numpy(zero_copy_only=False)).reshape(n, 1)
    raise DatasetError(f"{path}: column {name!r} has unsupported type {col.type}")


def _value_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if (pa.types.is_fixed_size_list(t) or pa.types.is_list(t)
                            or pa.types.is_large_list(t)) else t


def _where(table: pa.Table, row: int) -> str:
    """`` (episode E, frame F)`` for a row, when those columns exist."""
    parts = []
    for name, label in (("episode_index", "episode"), ("frame_index", "frame")):
        if name in table.column_names:
            parts.append(f"{label} {table.column(name)[row].as_py()}")
    return f" ({', '.join(parts)})" if parts else ""


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()
