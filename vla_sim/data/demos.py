"""Demonstrations as whole in-memory arrays, and the index arithmetic every trainer shares
(train/val split by whole episodes, action chunks that never cross an episode, merging datasets).

numpy only: a GPU machine with torch and a dataset (no simulator) can train from these.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


# Buffers that append_rows hands out views of: id -> (weak reference, rows in use).
_BUFFERS: dict[int, tuple[weakref.ref, int]] = {}


def append_rows(held: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``np.concatenate([held, rows])``, usually without copying ``held``: the result is a view
    of a buffer with room to spare (twice the rows; pages untouched until written), and when
    ``held`` is such a view and the buffer's newest one, ``rows`` go into the room behind it.
    DAgger grows its frames every round; copying them all each time cost a round ~0.8 s at
    48k frames. Views handed out earlier never see their rows change."""
    n, m = len(held), len(rows)
    base = held.base
    entry = _BUFFERS.get(id(base)) if base is not None else None
    if (entry is not None and entry[0]() is base and entry[1] == n and len(base) >= n + m
            and base.dtype == held.dtype and base.shape[1:] == held.shape[1:] == rows.shape[1:]
            and held.ctypes.data == base.ctypes.data and held.flags.c_contiguous):
        base[n:n + m] = rows
        _BUFFERS[id(base)] = (entry[0], n + m)
        return base[:n + m]
    if held.shape[1:] != rows.shape[1:]:
        raise ValueError(f"cannot append rows of shape {rows.shape[1:]} to rows of shape "
                         f"{held.shape[1:]}")
    buffer = np.empty((2 * (n + m), *held.shape[1:]), np.result_type(held, rows))
    buffer[:n], buffer[n:n + m] = held, rows
    key = id(buffer)
    _BUFFERS[key] = (weakref.ref(buffer, lambda _, key=key: _BUFFERS.pop(key, None)), n + m)
    return buffer[:n + m]


@dataclass
class DemoArrays:
    """Demonstration steps as whole arrays (N steps).

    images: observation key (``image``, ``wrist_image``) -> (N, H, W, 3) uint8.
    states: (N, state_dim) float32. actions: (N, action_dim) float32 in [-1, 1].
    instructions: the distinct instruction strings; instruction_index: (N,) into them.
    episode_index: (N,) int, used to split train/val by whole episodes.
    env_states: optional (N, E) float32 privileged goal state (``observation.environment_state``),
    the target of the auxiliary loss (``BCConfig.aux_weight``).
    episode_roles: optional episode index -> {"task": name, "roles": {"object": "red_cube", ...}},
    what language augmentation (``BCConfig.instruction_aug``) rephrases.
    """

    images: dict[str, np.ndarray]
    states: np.ndarray
    actions: np.ndarray
    instructions: list[str]
    instruction_index: np.ndarray
    episode_index: np.ndarray
    env_states: np.ndarray | None = None
    episode_roles: dict[int, dict] | None = None

    def __post_init__(self) -> None:
        n = len(self.states)
        sizes = {"states": n, "actions": len(self.actions),
                 "instruction_index": len(self.instruction_index),
                 "episode_index": len(self.episode_index)}
        if self.env_states is not None:
            sizes["env_states"] = len(self.env_states)
        sizes.update({f"images[{k}]": len(v) for k, v in self.images.items()})
        if len(set(sizes.values())) != 1:
            raise ValueError(f"demonstration arrays disagree on the number of steps: {sizes}")
        if n == 0:
            raise ValueError("no demonstration steps")
        if self.states.ndim != 2 or self.actions.ndim != 2:
            raise ValueError(f"states and actions must be 2-D, got shapes {self.states.shape} "
                             f"and {self.actions.shape}")
        idx = np.asarray(self.instruction_index)
        if idx.min() < 0 or idx.max() >= len(self.instructions):
            raise ValueError(f"instruction_index out of range 0..{len(self.instructions) - 1}")

    @classmethod
    def from_steps(cls, images: dict[str, np.ndarray], states, actions,
                   instructions: Sequence[str], episode_index) -> "DemoArrays":
        """Build from one instruction string per step."""
        unique = sorted(set(instructions))
        lookup = {s: i for i, s in enumerate(unique)}
        return cls(images=images, states=np.asarray(states, np.float32),
                   actions=np.asarray(actions, np.float32), instructions=unique,
                   instruction_index=np.array([lookup[s] for s in instructions], np.int64),
                   episode_index=np.asarray(episode_index, np.int64))

    @classmethod
    def from_dataset(cls, dataset: Any) -> "DemoArrays":
        """From a :class:`vla_sim.data.VLADataset` (its whole-array accessor; frames loaded into
        memory). Only the dataset's selected episodes are used."""
        a = dataset.arrays()
        ids = np.asarray(a["frame_ids"], np.int64)
        reader = getattr(dataset, "reader", None)
        roles = ({} if reader is None else
                 episode_roles(reader, np.unique(np.asarray(a["episode_index"])[ids])))
        image_keys = [k for k in a if k == "image" or k.endswith("_image")]
        return cls(images={k: np.ascontiguousarray(a[k][ids]) for k in image_keys},
                   states=np.asarray(a["state"][ids], np.float32),
                   actions=np.asarray(a["action"][ids], np.float32),
                   instructions=list(dataset.instructions),
                   instruction_index=np.asarray(a["task_index"][ids], np.int64),
                   episode_index=np.asarray(a["episode_index"][ids], np.int64),
                   env_states=np.asarray(a["env_state"][ids], np.float32)
                   if "env_state" in a else None,
                   episode_roles=roles or None)

    @classmethod
    def grown(cls, prev: "DemoArrays", reader: Any) -> "DemoArrays":
        """The whole dataset of ``reader`` (a :class:`vla_sim.data.DatasetReader`), when
        ``prev`` holds its first episodes (every step of them, as :meth:`from_dataset` built
        them) and episodes were only appended since: only the new episodes' videos are decoded,
        the rest of the frames are ``prev``'s. Equal to :meth:`from_dataset` on the whole
        dataset; a DAgger round costs its new rollouts, not a reload of everything before."""
        from vla_sim.data import format as fmt

        done = int(prev.episode_index.max()) + 1
        kept = len(prev.states)
        problems = []
        if reader.num_episodes < done or (done < reader.num_episodes and int(
                reader.episodes[done]["dataset_from_index"]) != kept):
            problems.append(f"the dataset's first {done} episodes do not end at step {kept}")
        if list(reader.task_names[:len(prev.instructions)]) != list(prev.instructions):
            problems.append("the dataset's instruction list is not an extension of the held one")
        keys = [fmt.image_key(c, i) for i, c in enumerate(reader.cameras)]
        if sorted(keys) != sorted(prev.images):
            problems.append(f"cameras {sorted(keys)} != held {sorted(prev.images)}")
        if problems:
            raise ValueError(f"{reader.root}: cannot grow the held demonstrations: "
                             + "; ".join(problems))
        new = list(range(done, reader.num_episodes))
        if not new:
            return prev
        a = reader.low_dim_arrays(first_episode=done)  # the held steps are not read again
        if not (a["episode_index"] >= done).all():
            raise ValueError(f"{reader.root}: cannot grow the held demonstrations: its steps "
                             f"from {kept} on belong to earlier episodes")
        images = {key: append_rows(prev.images[key], reader.decode_frames(cam, new))
                  for key, cam in zip(keys, reader.cameras)}
        roles = {**(prev.episode_roles or {}), **episode_roles(reader, new)}

        def grow(held: np.ndarray | None, name: str, dtype: Any) -> np.ndarray | None:
            if held is None or name not in a:
                return None
            return np.concatenate([held, np.asarray(a[name], dtype).reshape(-1, *held.shape[1:])])

        return cls(images=images, states=grow(prev.states, fmt.STATE_KEY, np.float32),
                   actions=grow(prev.actions, fmt.ACTION_KEY, np.float32),
                   instructions=list(reader.task_names),
                   instruction_index=grow(prev.instruction_index, "task_index", np.int64),
                   episode_index=grow(prev.episode_index, "episode_index", np.int64),
                   env_states=grow(prev.env_states, fmt.ENV_STATE_KEY, np.float32),
                   episode_roles=roles or None)

    @classmethod
    def from_reader(cls, reader: Any) -> DemoArrays:
        """Every episode of a :class:`vla_sim.data.DatasetReader` without its camera frames
        (nothing is decoded): for what needs only the steps, instructions and roles (e.g.
        which instruction strings a BC run will encode)."""
        from vla_sim.data import format as fmt

        a = reader.low_dim_arrays()
        episodes = np.asarray(a["episode_index"], np.int64)
        return cls(images={}, states=np.asarray(a[fmt.STATE_KEY], np.float32),
                   actions=np.asarray(a[fmt.ACTION_KEY], np.float32),
                   instructions=list(reader.task_names),
                   instruction_index=np.asarray(a["task_index"], np.int64),
                   episode_index=episodes,
                   episode_roles=episode_roles(reader, np.unique(episodes)) or None)

    def check_fits(self, cfg: Any) -> None:
        """Raise ValueError naming every way these arrays do not fit the policy config
        (a ``VLAPolicyConfig``: state/action dims, cameras, image size)."""
        problems = []
        if self.states.shape[1] != cfg.state_dim:
            problems.append(f"state dim {self.states.shape[1]} != policy.state_dim {cfg.state_dim}")
        if self.actions.shape[1] != cfg.action_dim:
            problems.append(f"action dim {self.actions.shape[1]} != policy.action_dim "
                            f"{cfg.action_dim}")
        for key in cfg.image_keys:
            if key not in self.images:
                problems.append(f"no {key!r} images (policy cameras {cfg.cameras}, dataset has "
                                f"{sorted(self.images)})")
            elif self.images[key].shape[1:] != (cfg.image_size, cfg.image_size, 3):
                problems.append(f"{key} shape {self.images[key].shape[1:]} != "
                                f"({cfg.image_size}, {cfg.image_size}, 3) from policy.image_size")
        if problems:
            raise ValueError("dataset does not fit the policy config: " + "; ".join(problems))


def episode_roles(reader: Any, episodes: Sequence[int]) -> dict[int, dict]:
    """Episode -> {"task", "roles"} for the ``episodes`` of ``reader`` that recorded roles."""
    roles = {}
    for ep in episodes:
        rec = reader.episode_record(int(ep))
        if rec["metadata"].get("roles") and rec.get("task"):
            roles[int(ep)] = {"task": rec["task"], "roles": rec["metadata"]["roles"]}
    return roles


def split_episodes(episode_index: np.ndarray, val_fraction: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(train step ids, val step ids), holding out ``ceil(fraction * episodes)`` whole episodes
    (none if fewer than 2 episodes)."""
    episodes = np.unique(episode_index)
    n_val = math.ceil(val_fraction * len(episodes)) if len(episodes) > 1 else 0
    n_val = min(n_val, len(episodes) - 1)
    val_eps = np.random.default_rng([seed, 7]).permutation(episodes)[:n_val]
    is_val = np.isin(episode_index, val_eps)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def chunk_indices(episode_index: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N, chunk) of steps t..t+chunk-1, clamped to the episode's last step; mask (N, chunk)
    True where the step is inside the episode). Episodes are contiguous runs of steps."""
    ep = np.asarray(episode_index)
    n = len(ep)
    ids = np.arange(n)[:, None] + np.arange(chunk)[None, :]
    inside = ids < n
    ids = np.minimum(ids, n - 1)
    inside &= ep[ids] == ep[:, None]
    # Past the end: repeat the episode's last step (masked out of the loss anyway).
    last = np.where(inside, ids, -1).max(axis=1, keepdims=True)
    return np.where(inside, ids, last), inside


def concat_demos(parts: Sequence[DemoArrays]) -> tuple[DemoArrays, list[np.ndarray]]:
    """One :class:`DemoArrays` from several (instructions merged, episode ids kept apart), and
    the step ids of each part in the result."""
    instructions = sorted({s for p in parts for s in p.instructions})
    lookup = {s: i for i, s in enumerate(instructions)}
    keys = set(parts[0].images)
    for p in parts[1:]:
        if set(p.images) != keys:
            raise ValueError(f"datasets have different cameras: {sorted(keys)} vs {sorted(p.images)}")
    ids, offset, ep_offset, episode = [], 0, 0, []
    for p in parts:
        ids.append(np.arange(offset, offset + len(p.states)))
        offset += len(p.states)
        episode.append(p.episode_index - p.episode_index.min() + ep_offset)
        ep_offset = int(episode[-1].max()) + 1
    merged = DemoArrays(
        images={k: np.concatenate([p.images[k] for p in parts]) for k in keys},
        states=np.concatenate([p.states for p in parts]),
        actions=np.concatenate([p.actions for p in parts]),
        instructions=instructions,
        instruction_index=np.concatenate([np.array([lookup[p.instructions[i]]
                                                    for i in p.instruction_index], np.int64)
                                          for p in parts]),
        episode_index=np.concatenate(episode))
    return merged, ids
