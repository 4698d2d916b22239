"""``VLADataset``: a torch Dataset of (image, state, instruction) -> action steps.

All arrays are loaded once: low-dimensional columns into memory (refused if any state or action is
not finite), camera frames as the reader's memory-mapped uint8 cache, verified against its
checksum once in the main process and reopened without re-hashing in each DataLoader worker
(never pickled).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vla_sim.data import format as fmt
from vla_sim.data.reader import DatasetReader


class VLADataset(Dataset):
    """Steps of a demonstration dataset.

    root: dataset folder. history: number of observation frames per item (>1 stacks the previous
    frames, repeating the episode's first frame at its start). action_chunk: actions per item
    (t .. t+chunk-1; past the episode end the last action repeats and ``action_is_pad`` is True).
    split: None or "all" (every episode), a name in info.json["splits"], or "train"/"val" with
    ``val_fraction`` > 0 (the last ceil(fraction * N) episodes are "val").
    episodes: optional explicit episode indices (applied after the split).

    Item: {"image": uint8 (H, W, 3) or (history, H, W, 3), ["wrist_image"], "state": float32 (22,)
    or (history, 22), "action": float32 (4,) or (chunk, 4), "instruction": str, "task_index",
    "episode_index", "frame_index"}.
    """

    def __init__(self, root: str | Path, history: int = 1, action_chunk: int = 1,
                 split: str | None = None, episodes: Sequence[int] | None = None,
                 val_fraction: float = 0.0, validate: bool = True):
        if history < 1 or action_chunk < 1:
            raise ValueError(f"history and action_chunk must be >= 1, got {history} and {action_chunk}")
        self.reader = DatasetReader(root, validate=validate)
        self.root = Path(root)
        self.history, self.action_chunk = int(history), int(action_chunk)
        self.episode_indices = self._select_episodes(split, episodes, val_fraction)
        self.cameras = self.reader.cameras
        # build (or verify against its checksum) the decode cache now, in the main process
        self._frames: dict[str, np.ndarray] | None = {cam: self.reader.frames(cam)
                                                       for cam in self.cameras}
        self._arrays = self.reader.low_dim_arrays()
        self.instructions = self.reader.task_names
        eps = self.reader.episodes
        self._ep_from = np.array([e["dataset_from_index"] for e in eps], dtype=np.int64)
        self._ep_to = np.array([e["dataset_to_index"] for e in eps], dtype=np.int64)
        self._frame_ids = (np.concatenate([np.arange(self._ep_from[i], self._ep_to[i])
                                           for i in self.episode_indices])
                           if self.episode_indices else np.zeros(0, dtype=np.int64))

    def _select_episodes(self, split: str | None, episodes: Sequence[int] | None,
                         val_fraction: float) -> list[int]:
        n = self.reader.num_episodes
        splits = self.reader.info.get("splits", {})
        if split in (None, "all"):
            chosen = list(range(n))
        elif val_fraction > 0 and split in ("train", "val"):
            n_val = min(n, math.ceil(val_fraction * n))
            chosen = list(range(n - n_val)) if split == "train" else list(range(n - n_val, n))
        elif split in splits:
            lo, hi = (int(x) for x in splits[split].split(":"))
            chosen = list(range(lo, hi))
        else:
            raise ValueError(f"unknown split {split!r}; dataset splits are {sorted(splits)}, or use "
                             f"'train'/'val' with val_fraction > 0, or None for all")
        if episodes is not None:
            bad = [e for e in episodes if not 0 <= e < n]
            if bad:
                raise ValueError(f"episode indices {bad} out of range 0..{n - 1}")
            keep = set(chosen)
            chosen = [int(e) for e in episodes if e in keep]
        return chosen

    # ------------------------------------------------------------------ whole-array access
    def _open_frames(self) -> dict[str, np.ndarray]:
        if self._frames is None:  # in a worker: the main process verified these files
            self._frames = {cam: np.load(self.reader.frames_path(cam), mmap_mode="r")
                            for cam in self.cameras}
        return self._frames

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_frames"] = None  # memmaps are reopened per process, not pickled as arrays
        return state

    def arrays(self) -> dict[str, np.ndarray]:
        """Whole-dataset arrays for trainers that sample batches themselves (all episodes, index
        order): "state" (N, 22) f32, "action" (N, 4) f32, "reward" (N,), "done" (N,), "episode_index",
        "frame_index", "task_index" (N,) int64, "<camera>_image" / "image" (N, H, W, 3) uint8 memmaps,
        "episode_from"/"episode_to" (E,) frame ranges and "frame_ids" (selected split's frames);
        "env_state" (N, E) f32 when the dataset records ``observation.environment_state``."""
        a = self._arrays
        out = {
            "state": a[fmt.STATE_KEY].astype(np.float32), "action": a[fmt.ACTION_KEY].astype(np.float32),
            "reward": a[fmt.REWARD_KEY], "done": a[fmt.DONE_KEY], "episode_index": a["episode_index"],
            "frame_index": a["frame_index"], "task_index": a["task_index"],
            "episode_from": self._ep_from, "episode_to": self._ep_to, "frame_ids": self._frame_ids,
        }
        if fmt.ENV_STATE_KEY in a:
            out["env_state"] = a[fmt.ENV_STATE_KEY].astype(np.float32)
        for i, (cam, frames) in enumerate(self._open_frames().items()):
            out[fmt.image_key(cam, i)] = frames
        return out

    # ------------------------------------------------------------------ Dataset protocol
    def __len__(self) -> int:
        return len(self._frame_ids)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        g = int(self._frame_ids[idx])
        a = self._arrays
        ep = int(a["episode_index"][g])
        start, end = int(self._ep_from[ep]), int(self._ep_to[ep])
        obs_ids = np.clip(np.arange(g - self.history + 1, g + 1), start, end - 1)
        act_ids = np.arange(g, g + self.action_chunk)
        pad = act_ids >= end
        act_ids = np.minimum(act_ids, end - 1)
        item: dict[str, Any] = {}
        for i, (cam, frames) in enumerate(self._open_frames().items()):
            img = frames[obs_ids] if self.history > 1 else frames[g]
            item[fmt.image_key(cam, i)] = torch.from_numpy(np.array(img))
        state = a[fmt.STATE_KEY][obs_ids] if self.history > 1 else a[fmt.STATE_KEY][g]
        action = a[fmt.ACTION_KEY][act_ids] if self.action_chunk > 1 else a[fmt.ACTION_KEY][g]
        task = int(a["task_index"][g])
        item.update({
            "state": torch.as_tensor(np.asarray(state, np.float32)),
            "action": torch.as_tensor(np.asarray(action, np.float32)),
            "instruction": self.instructions[task], "task_index": task, "episode_index": ep,
            "frame_index": int(a["frame_index"][g]),
        })
        if self.action_chunk > 1:
            item["action_is_pad"] = torch.from_numpy(pad)
        return item
