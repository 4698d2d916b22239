"""Open, validate and read a LeRobotDataset v3.0 folder written by vla-sim (or LeRobot-like).

Videos are decoded once into a memory-mapped uint8 cache per camera
(``<root>/.cache/frames_<camera>.npy``), keyed on the episodes file and video files so any change
to the dataset rebuilds it; nothing decodes video per item.
"""

from __future__ import annotations

import hashlib
import json
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
    def validate(self) -> None:
        """Raise :class:`DatasetError` naming the file at fault if anything disagrees."""
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
        video_frames: dict[str, int] = {}
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
            for cam in self.cameras:
                vpath = self.video_path(cam, i)
                video_frames[vpath] = video_frames.get(vpath, 0) + int(ep["length"])
        for rel, rows in data_rows.items():
            path = self.root / rel
            if not path.exists():
                raise DatasetError(f"{path}: data file missing")
            try:
                got = pq.read_metadata(path).num_rows
            except Exception as exc:
                raise DatasetError(f"{path}: unreadable parquet ({exc})") from exc
            if got != rows:
                raise DatasetError(f"{path}: {got} frames, episodes metadata says {rows}")
        for rel, count in video_frames.items():
            path = self.root / rel
            if not path.exists():
                raise DatasetError(f"{path}: video file missing")
            try:
                got = fmt.mp4_frame_count(path)
            except (ValueError, OSError) as exc:
                raise DatasetError(f"{path}: unreadable video ({exc})") from exc
            if got != count:
                raise DatasetError(f"{path}: video has {got} frames, parquet/episodes say {count}")

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
    def low_dim_arrays(self) -> dict[str, np.ndarray]:
        """All frames' non-image columns, concatenated in index order, as numpy arrays."""
        tables = []
        for rel in dict.fromkeys(self.data_path(i) for i in range(self.num_episodes)):
            tables.append(_read_parquet(self.root / rel))
        if not tables:
            return {}
        table = pa.concat_tables(tables)
        out = {}
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
                out[name] = np.asarray(col.flatten().to_numpy(zero_copy_only=False)).reshape(len(col), -1)
            else:
                out[name] = col.to_numpy(zero_copy_only=False)
        order = np.argsort(out["index"], kind="stable")
        if not np.array_equal(out["index"][order], np.arange(len(order))):
            raise DatasetError(f"{self.root / 'data'}: frame 'index' column is not 0..{len(order) - 1}")
        return {k: v[order] for k, v in out.items()}

    def frames(self, camera: str) -> np.ndarray:
        """(total_frames, H, W, 3) uint8 memmap of one camera, decoding the videos once."""
        cache_dir = self.root / fmt.CACHE_DIR
        npy, key_file = cache_dir / f"frames_{camera}.npy", cache_dir / f"frames_{camera}.key"
        key = self._cache_key(camera)
        if npy.exists() and key_file.exists() and key_file.read_text() == key:
            return np.load(npy, mmap_mode="r")
        cache_dir.mkdir(parents=True, exist_ok=True)
        h, w, _ = self.image_shape(camera)
        tmp = cache_dir / f".frames_{camera}.{os.getpid()}.tmp.npy"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(self.num_frames, h, w, 3))

        def decode_one(i: int) -> None:
            ep = self.episodes[i]
            path = self.root / self.video_path(camera, i)
            try:
                video = read_video(path, expected_shape=(h, w))
            except Exception as exc:
                raise DatasetError(f"{path}: cannot decode ({exc})") from exc
            if len(video) != ep["length"]:
                raise DatasetError(f"{path}: decoded {len(video)} frames, episode {i} has {ep['length']}")
            out[ep["dataset_from_index"]:ep["dataset_to_index"]] = video

        try:
            # ffmpeg runs in subprocesses, so threads decode in parallel here.
            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
                list(pool.map(decode_one, range(self.num_episodes)))
            out.flush()
            del out
            os.replace(tmp, npy)
        except BaseException:
            if tmp.exists():
                tmp.unlink()
            raise
        atomic_write_text(key_file, key)
        return np.load(npy, mmap_mode="r")

    def _cache_key(self, camera: str) -> str:
        h = hashlib.sha256()
        h.update((self.root / fmt.EPISODES_PATH).read_bytes() if self.episodes else b"")
        for i in range(self.num_episodes):
            st = (self.root / self.video_path(camera, i)).stat()
            h.update(f"{i}:{st.st_size}:{st.st_mtime_ns};".encode())
        return h.hexdigest()

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
