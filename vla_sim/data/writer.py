"""Write demonstration episodes as a LeRobotDataset v3.0 folder, one atomic episode at a time.

Commit order per episode: data parquet and videos (each temp file + rename), then tasks, then the
episodes parquet (the commit point: an episode exists once its row is there), then stats and
info.json. A crash before the episodes parquet is renamed leaves only orphan files that the next
writer overwrites; a crash after it leaves info/stats one episode behind, which opening the writer
again repairs (the reader reports it as an inconsistency naming info.json).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vla_sim.data import format as fmt
from vla_sim.data.format import DatasetError
from vla_sim.utils.io import atomic_write_bytes, atomic_write_json
from vla_sim.utils.video import encode_video_bytes


@dataclass
class Episode:
    """One demonstration, as recorded from the env.

    images: camera name -> (T, H, W, 3) uint8 frames (observation at step t).
    states: (T, state_dim) float32 proprioception at step t.
    actions: (T, action_dim) float32 action taken at step t.
    rewards: (T,) reward received after action t; dones: (T,) episode ended after action t.
    metadata: replay record: seed, randomization (plain dict), task, success, attempt_index, ...
    env_states: optional (T, E) float32 privileged state at step t (``observation.environment_state``).
    """

    images: dict[str, np.ndarray]
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    instruction: str
    metadata: dict[str, Any] = field(default_factory=dict)
    env_states: np.ndarray | None = None

    @property
    def length(self) -> int:
        return int(len(self.states))


@dataclass
class EncodedEpisode:
    """An episode with its videos already encoded: what a collection worker sends to the writer."""

    videos: dict[str, bytes]  # camera -> MP4 bytes
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    instruction: str
    metadata: dict[str, Any]
    image_stats: dict[str, dict[str, np.ndarray]]  # camera -> LeRobot image stats
    first_frame_sha256: str
    env_states: np.ndarray | None = None

    @property
    def length(self) -> int:
        return int(len(self.states))


def frame_sha256(image: np.ndarray) -> str:
    """SHA-256 of a raw uint8 frame (shape and bytes): identifies an episode's first observation."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h = hashlib.sha256(str(image.shape).encode())
    h.update(image.tobytes())
    return h.hexdigest()


def encode_episode(episode: Episode | Mapping[str, Any], fps: int) -> EncodedEpisode:
    """Encode videos and compute image stats; pure, so collection workers can run it in parallel."""
    ep = episode if isinstance(episode, Episode) else Episode(**dict(episode))
    t = ep.length
    if t == 0:
        raise ValueError("episode has 0 frames")
    named = [("actions", ep.actions), ("rewards", ep.rewards), ("dones", ep.dones)]
    if ep.env_states is not None:
        named.append(("env_states", ep.env_states))
    for name, arr in named:
        if len(arr) != t:
            raise ValueError(f"episode {name} has {len(arr)} rows, states have {t}")
    videos, image_stats = {}, {}
    for cam, frames in ep.images.items():
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or len(frames) != t:
            raise ValueError(f"camera {cam!r}: images must be ({t}, H, W, 3) uint8, "
                             f"got {frames.dtype} {frames.shape}")
        videos[cam] = encode_video_bytes(frames, fps)
        sample = frames[:: max(1, t // 20)]  # LeRobot also subsamples frames for image stats
        image_stats[cam] = fmt.feature_stats(sample, image=True)
        image_stats[cam]["count"] = np.array([t])
    first_cam = next(iter(ep.images))
    return EncodedEpisode(
        videos=videos, states=np.asarray(ep.states, np.float32),
        actions=np.asarray(ep.actions, np.float32), rewards=np.asarray(ep.rewards, np.float32).reshape(t),
        dones=np.asarray(ep.dones, bool).reshape(t), instruction=str(ep.instruction),
        metadata=dict(ep.metadata), image_stats=image_stats,
        first_frame_sha256=frame_sha256(ep.images[first_cam][0]),
        env_states=None if ep.env_states is None else np.asarray(ep.env_states, np.float32))


class LeRobotDatasetWriter:
    """Append episodes to a LeRobotDataset v3.0 folder; creates it, or resumes an existing one.

    root: dataset folder. fps: control frequency (frames per second of data and videos).
    robot_type: e.g. "panda". cameras: camera names ("front", "wrist"); the first is the policy
    image. state_dim / action_dim: vector sizes. image_size: (H, W) or an int for square frames.
    extra_info: JSON data stored under info.json["vla_sim"] (fingerprint, collection settings).
    env_state_dim: size of ``observation.environment_state`` (0: not recorded); when set, every
    episode must carry ``env_states``.
    """

    def __init__(self, root: str | Path, fps: int, robot_type: str, cameras: tuple[str, ...] | list[str],
                 state_dim: int = 22, action_dim: int = 4, image_size: int | tuple[int, int] = 64,
                 chunks_size: int = fmt.DEFAULT_CHUNK_SIZE, extra_info: dict | None = None,
                 env_state_dim: int = 0):
        self.root = Path(root)
        # (episodes table, aggregated stats) as of the last meta write; None: rebuild
        self._meta_cache: tuple[Any, fmt.StatsAccumulator] | None = None
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.fps, self.robot_type, self.cameras = int(fps), robot_type, tuple(cameras)
        self.state_dim, self.action_dim, self.image_size = int(state_dim), int(action_dim), hw
        if not self.cameras:
            raise ValueError("at least one camera is needed")
        self.env_state_dim = int(env_state_dim)
        features = fmt.build_features(self.cameras, hw, self.state_dim, self.action_dim, self.fps,
                                      self.env_state_dim)
        info_path = self.root / fmt.INFO_PATH
        if info_path.exists():
            self.info = json.loads(info_path.read_text())
            self._check_compatible(features)
            self._load_existing()
            if extra_info is not None:
                self.info["vla_sim"] = {**self.info.get("vla_sim", {}), **extra_info}
            self._write_meta()  # repairs info/stats if a crash left them behind the episodes file
        else:
            if self.root.exists() and any(self.root.iterdir()):
                raise DatasetError(f"{self.root}: folder exists, is not empty and has no "
                                   f"{fmt.INFO_PATH}; refusing to write a dataset into it")
            self.info = {
                "codebase_version": fmt.CODEBASE_VERSION, "robot_type": robot_type,
                "total_episodes": 0, "total_frames": 0, "total_tasks": 0,
                "chunks_size": int(chunks_size),
                "data_files_size_in_mb": fmt.DEFAULT_DATA_FILE_SIZE_IN_MB,
                "video_files_size_in_mb": fmt.DEFAULT_VIDEO_FILE_SIZE_IN_MB,
                "fps": self.fps, "splits": {}, "data_path": fmt.DATA_PATH,
                "video_path": fmt.VIDEO_PATH, "features": features,
                "vla_sim": dict(extra_info or {}),
            }
            self.episodes: list[dict[str, Any]] = []
            self.tasks: dict[str, int] = {}
            self._write_meta()
        self._remove_orphans()

    # ------------------------------------------------------------------ state on disk
    @property
    def chunks_size(self) -> int:
        return int(self.info["chunks_size"])

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return int(self.episodes[-1]["dataset_to_index"]) if self.episodes else 0

    def _check_compatible(self, features: dict) -> None:
        path = self.root / fmt.INFO_PATH
        if self.info.get("codebase_version") != fmt.CODEBASE_VERSION:
            raise DatasetError(f"{path}: codebase_version is {self.info.get('codebase_version')!r}, "
                               f"this writer appends to {fmt.CODEBASE_VERSION!r} only")
        diffs = []
        if self.info.get("fps") != self.fps:
            diffs.append(f"fps {self.info.get('fps')} != {self.fps}")
        if self.info.get("robot_type") != self.robot_type:
            diffs.append(f"robot_type {self.info.get('robot_type')!r} != {self.robot_type!r}")
        old = {k: (v["dtype"], list(v["shape"])) for k, v in self.info.get("features", {}).items()}
        new = {k: (v["dtype"], list(v["shape"])) for k, v in features.items()}
        if old != new:
            diffs.append(f"features {old} != {new}")
        if diffs:
            raise DatasetError(f"{path}: existing dataset does not match the writer: " + "; ".join(diffs))

    def _load_existing(self) -> None:
        ep_path = self.root / fmt.EPISODES_PATH
        self.episodes = pq.read_table(ep_path).to_pylist() if ep_path.exists() else []
        tasks_path = self.root / fmt.TASKS_PATH
        self.tasks = {}
        if tasks_path.exists():
            import pandas as pd  # lazy: collection workers never need it

            df = pd.read_parquet(tasks_path)
            self.tasks = {str(t): int(i) for t, i in zip(df.index, df["task_index"])}

    def _remove_orphans(self) -> None:
        """Delete temp files and the files of an episode whose commit never happened."""
        n = self.num_episodes
        for sub in ("data", "videos", "meta"):
            base = self.root / sub
            if not base.exists():
                continue
            for path in base.rglob("*"):
                if path.is_file() and path.name.startswith(".") and ".tmp" in path.name:
                    path.unlink()
        for path in (self.root / "data").rglob("*.parquet") if (self.root / "data").exists() else []:
            if self._episode_of(path) >= n:
                path.unlink()
        for path in (self.root / "videos").rglob("*.mp4") if (self.root / "videos").exists() else []:
            if self._episode_of(path) >= n:
                path.unlink()

    def _episode_of(self, path: Path) -> int:
        chunk = int(path.parent.name.split("-")[1])
        file = int(path.stem.split("-")[1])
        return chunk * self.chunks_size + file

    # ------------------------------------------------------------------ appending
    def add_episode(self, episode: Episode | Mapping[str, Any]) -> int:
        """Encode and append one episode atomically; returns its episode index."""
        return self.add_encoded(encode_episode(episode, self.fps))

    def add_encoded(self, enc: EncodedEpisode) -> int:
        """Append an episode whose videos were encoded by :func:`encode_episode`."""
        t = enc.length
        if set(enc.videos) != set(self.cameras):
            raise ValueError(f"episode cameras {sorted(enc.videos)} != dataset cameras {list(self.cameras)}")
        if enc.states.shape != (t, self.state_dim) or enc.actions.shape != (t, self.action_dim):
            raise ValueError(f"states {enc.states.shape} / actions {enc.actions.shape} do not match "
                             f"state_dim={self.state_dim}, action_dim={self.action_dim}")
        if self.env_state_dim and (enc.env_states is None
                                   or enc.env_states.shape != (t, self.env_state_dim)):
            got = None if enc.env_states is None else enc.env_states.shape
            raise ValueError(f"episode env_states {got} do not match env_state_dim="
                             f"{self.env_state_dim} ({t} steps)")
        ep_index, start = self.num_episodes, self.num_frames
        new_task = enc.instruction not in self.tasks
        task_index = self.tasks.setdefault(enc.instruction, len(self.tasks))
        chunk, file = fmt.chunk_file(ep_index, self.chunks_size)

        # 1. frame data
        frame = np.arange(t)
        env_state = {fmt.ENV_STATE_KEY: enc.env_states} if self.env_state_dim else {}
        table = pa.table({
            fmt.STATE_KEY: _fixed_list(enc.states),
            **{k: _fixed_list(v) for k, v in env_state.items()},
            fmt.ACTION_KEY: _fixed_list(enc.actions),
            fmt.REWARD_KEY: pa.array(enc.rewards, pa.float32()),
            fmt.DONE_KEY: pa.array(enc.dones, pa.bool_()),
            "timestamp": pa.array((frame / self.fps).astype(np.float32), pa.float32()),
            "frame_index": pa.array(frame, pa.int64()),
            "episode_index": pa.array(np.full(t, ep_index), pa.int64()),
            "index": pa.array(start + frame, pa.int64()),
            "task_index": pa.array(np.full(t, task_index), pa.int64()),
        })
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="snappy")
        atomic_write_bytes(self.root / fmt.data_file(ep_index, self.chunks_size), buf.getvalue())
        # 2. videos
        for cam in self.cameras:
            atomic_write_bytes(self.root / fmt.video_file(cam, ep_index, self.chunks_size), enc.videos[cam])

        # 3. the episode row (commit point, written with the meta files)
        low_dim = {fmt.STATE_KEY: enc.states, fmt.ACTION_KEY: enc.actions,
                   fmt.REWARD_KEY: enc.rewards, fmt.DONE_KEY: enc.dones.astype(np.float32),
                   "timestamp": frame / self.fps, "frame_index": frame,
                   "episode_index": np.full(t, ep_index), "index": start + frame,
                   "task_index": np.full(t, task_index), **env_state}
        stats = {k: fmt.feature_stats(np.asarray(v)) for k, v in low_dim.items()}
        for cam in self.cameras:
            stats[fmt.video_key(cam)] = enc.image_stats[cam]
        meta = enc.metadata
        row: dict[str, Any] = {
            "episode_index": ep_index, "tasks": [enc.instruction], "length": t,
            "data/chunk_index": chunk, "data/file_index": file,
            "dataset_from_index": start, "dataset_to_index": start + t,
        }
        for cam in self.cameras:
            key = fmt.video_key(cam)
            row.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                        f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": t / self.fps})
        row.update(fmt.flatten_stats(stats))
        row.update({
            "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
            "vla_sim/seed": int(meta["seed"]) if meta.get("seed") is not None else -1,
            "vla_sim/randomization": json.dumps(meta.get("randomization"), sort_keys=True,
                                                default=_json_default),
            "vla_sim/instruction": enc.instruction,
            "vla_sim/task": str(meta.get("task", "")),
            "vla_sim/success": bool(meta.get("success", False)),
            "vla_sim/first_frame_sha256": enc.first_frame_sha256,
            "vla_sim/attempt_index": int(meta.get("attempt_index", ep_index)),
            "vla_sim/metadata": json.dumps({k: v for k, v in meta.items() if k not in
                                            ("seed", "randomization", "task", "success", "attempt_index")},
                                           sort_keys=True, default=_json_default),
        })
        self.episodes.append(row)
        try:
            self._write_meta(write_tasks=new_task)
        except BaseException:
            self.episodes.pop()
            self._meta_cache = None  # it may hold the row just withdrawn
            if new_task:
                del self.tasks[enc.instruction]
            raise
        return ep_index

    # ------------------------------------------------------------------ meta files
    def _write_meta(self, write_tasks: bool = True) -> None:
        if write_tasks:
            import pandas as pd  # tasks.parquet keeps pandas' index metadata (LeRobot's load_tasks)

            tasks_df = pd.DataFrame({"task_index": list(self.tasks.values())},
                                    index=pd.Index(list(self.tasks.keys()), name="task"))
            buf = io.BytesIO()
            tasks_df.to_parquet(buf)
            atomic_write_bytes(self.root / fmt.TASKS_PATH, buf.getvalue())
        table, stats = self._episodes_table_and_stats()
        if self.episodes:
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="snappy")
            atomic_write_bytes(self.root / fmt.EPISODES_PATH, buf.getvalue())  # commit point
        atomic_write_json(self.root / fmt.STATS_PATH, fmt.stats_to_json(stats.result()))
        self.info["total_episodes"] = self.num_episodes
        self.info["total_frames"] = self.num_frames
        self.info["total_tasks"] = len(self.tasks)
        self.info["splits"] = {"train": f"0:{self.num_episodes}"} if self.episodes else {}
        atomic_write_json(self.root / fmt.INFO_PATH, self.info)

    def _episodes_table_and_stats(self) -> tuple[pa.Table | None, fmt.StatsAccumulator]:
        """The episodes as an Arrow table and their aggregated stats, extended by the rows added
        since the last call rather than rebuilt: every commit rewrites the meta files, and
        rebuilding them from all rows made each episode cost more than the one before (in a
        parallel collection this process's CPU is taken from the workers)."""
        cache = self._meta_cache
        n = len(self.episodes)
        if cache is None or cache[0] is None or cache[0].num_rows > n:
            stats = fmt.StatsAccumulator()
            for row in self.episodes:
                stats.add(fmt.unflatten_stats(row))
            cache = (pa.Table.from_pylist(self.episodes) if self.episodes else None, stats)
        elif cache[0].num_rows < n:
            table, stats = cache
            new_rows = self.episodes[table.num_rows:]
            try:
                if any(set(r) != set(table.schema.names) for r in new_rows):
                    raise ValueError("columns changed")
                table = pa.concat_tables(  # one chunk: a many-chunk table writes slowly
                    [table, pa.Table.from_pylist(new_rows, schema=table.schema)]
                ).combine_chunks()
            except (ValueError, TypeError, pa.ArrowException):  # a column's type widened
                table = pa.Table.from_pylist(self.episodes)
            for row in new_rows:
                stats.add(fmt.unflatten_stats(row))
            cache = (table, stats)
        self._meta_cache = cache
        return cache

    def set_extra_info(self, **items: Any) -> None:
        """Update info.json["vla_sim"] (e.g. collection settings) and rewrite info.json atomically."""
        self.info.setdefault("vla_sim", {}).update(items)
        atomic_write_json(self.root / fmt.INFO_PATH, self.info)


def _fixed_list(arr: np.ndarray) -> pa.FixedSizeListArray:
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1), pa.float32()), arr.shape[1])


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(o)
    return str(o)


__all__ = ["DatasetError", "Episode", "EncodedEpisode", "LeRobotDatasetWriter", "encode_episode",
           "frame_sha256"]
